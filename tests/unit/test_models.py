"""The feedback event and change contracts: what is accepted, what is refused, and at which field."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import jsonschema_rs
import pytest
from pydantic import TypeAdapter, ValidationError

from ..conftest import ROOT

from feedback_loop.models.changes import SEGMENT_TEXT, Change
from feedback_loop.models.errors import validation_field_errors
from feedback_loop.models.feedback import FeedbackEventIn, FeedbackType

events = TypeAdapter(FeedbackEventIn)


def refused_at(body: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        events.validate_python(body)
    return {e.field: e.message for e in validation_field_errors(caught.value)}


VALID_VALUES = {
    FeedbackType.THUMBS_UP: True,
    FeedbackType.THUMBS_DOWN: True,
    FeedbackType.RATING: 3,
    FeedbackType.COMMENT: "too long",
    FeedbackType.USAGE: True,
    FeedbackType.EDIT: "the edited text",
    FeedbackType.DISCARD: True,
}


@pytest.mark.parametrize("feedback_type", list(FeedbackType))
def test_each_type_accepts_its_value(feedback_type: FeedbackType) -> None:
    event = events.validate_python(
        {"request_id": "r", "feedback_type": feedback_type.value, "value": VALID_VALUES[feedback_type]})
    assert event.feedback_type is feedback_type
    assert event.value == VALID_VALUES[feedback_type]


@pytest.mark.parametrize(("feedback_type", "value"), [
    ("explicit_thumbs_up", False), ("explicit_thumbs_up", 1), ("explicit_thumbs_up", "true"),
    ("explicit_thumbs_down", None), ("implicit_usage", 0), ("implicit_discard", "yes"),
    ("explicit_rating", 0), ("explicit_rating", 6), ("explicit_rating", 4.5), ("explicit_rating", "4"),
    ("explicit_rating", 6.0),
    ("explicit_rating", True), ("explicit_text_comment", ""), ("explicit_text_comment", "   "),
    ("explicit_text_comment", "x" * 10_001), ("explicit_text_comment", 5), ("implicit_edit", 3),
])
def test_wrong_value_is_refused_at_value(feedback_type: str, value: object) -> None:
    errors = refused_at({"request_id": "r", "feedback_type": feedback_type, "value": value})
    assert list(errors) == ["value"]


def test_comment_of_exactly_ten_thousand_chars_is_accepted() -> None:
    event = events.validate_python({"request_id": "r", "feedback_type": "explicit_text_comment", "value": "x" * 10_000})
    assert len(event.value) == 10_000


def test_unknown_and_missing_type_name_feedback_type() -> None:
    assert "feedback_type" in refused_at({"request_id": "r", "feedback_type": "explicit_like", "value": True})
    assert refused_at({"request_id": "r", "value": True})["feedback_type"] == "is required"


@pytest.mark.parametrize(("body", "field"), [
    ({"feedback_type": "explicit_thumbs_up", "value": True}, "request_id"),
    ({"request_id": "", "feedback_type": "explicit_thumbs_up", "value": True}, "request_id"),
    ({"request_id": "x" * 257, "feedback_type": "explicit_thumbs_up", "value": True}, "request_id"),
    ({"request_id": "a\x00b", "feedback_type": "explicit_thumbs_up", "value": True}, "request_id"),
    ({"request_id": "r", "feedback_type": "explicit_thumbs_up", "value": True, "event_id": "has space"}, "event_id"),
    ({"request_id": "r", "feedback_type": "explicit_thumbs_up", "value": True, "project": "other"}, "project"),
    ({"request_id": "r", "feedback_type": "explicit_thumbs_up", "value": True, "timestamp": "yesterday"}, "timestamp"),
    ({"request_id": "r", "feedback_type": "explicit_thumbs_up", "value": True, "metadata": [1]}, "metadata"),
    ({"request_id": "r", "feedback_type": "explicit_thumbs_up", "value": True, "user_id": 7}, "user_id"),
])
def test_bad_fields_are_named(body: dict, field: str) -> None:
    assert field in refused_at(body)


def test_metadata_is_bounded_by_size_and_depth() -> None:
    base = {"request_id": "r", "feedback_type": "implicit_usage", "value": True}
    assert events.validate_python({**base, "metadata": {"k": "v" * 4000}}).metadata is not None
    assert "metadata" in refused_at({**base, "metadata": {"k": "v" * 4100}})
    deep: dict = {}
    node = deep
    for _ in range(10):
        node["n"] = {}
        node = node["n"]
    assert "metadata" in refused_at({**base, "metadata": deep})


def test_timestamp_rules() -> None:
    base = {"request_id": "r", "feedback_type": "implicit_usage", "value": True}
    now = datetime.now(timezone.utc)
    assert "timestamp" in refused_at({**base, "timestamp": (now + timedelta(minutes=6)).isoformat()})
    near = events.validate_python({**base, "timestamp": (now + timedelta(minutes=4)).isoformat()})
    assert near.timestamp.tzinfo is not None
    naive = events.validate_python({**base, "timestamp": "2026-05-15T10:00:00"})
    assert naive.timestamp == datetime(2026, 5, 15, 10, tzinfo=timezone.utc)
    shifted = events.validate_python({**base, "timestamp": "2026-05-15T12:00:00+02:00"})
    assert shifted.timestamp == datetime(2026, 5, 15, 10, tzinfo=timezone.utc)


def test_change_contract() -> None:
    change = Change.model_validate({"name": "prompt-v8", "effective_at": "2026-05-15T10:00:00Z",
                                    "segment": {"metadata.query_type": "code"}})
    assert change.design == "before_after"
    ab = Change.model_validate({"name": "ab-1", "effective_at": "2026-05-15T10:00:00Z",
                                "variant_field": "prompt_arm", "control": "a", "treatment": "b"})
    assert ab.design == "ab"
    with pytest.raises(ValidationError, match="variant_field, control and treatment"):
        Change.model_validate({"name": "ab-2", "effective_at": "2026-05-15T10:00:00Z", "variant_field": "arm"})
    with pytest.raises(ValidationError, match="must differ"):
        Change.model_validate({"name": "ab-3", "effective_at": "2026-05-15T10:00:00Z",
                               "variant_field": "arm", "control": "a", "treatment": "a"})
    with pytest.raises(ValidationError):
        Change.model_validate({"name": "bad name", "effective_at": "2026-05-15T10:00:00Z"})
    as_text = {"name": "c", "effective_at": "2026-05-15T10:00:00Z", "segment": "metadata.query_type=code, model=m-2"}
    text = Change.model_validate(as_text, context={SEGMENT_TEXT: True})  # as files may write it
    assert text.segment == {"metadata.query_type": "code", "model": "m-2"}
    with pytest.raises(ValidationError, match="valid dictionary"):
        Change.model_validate(as_text)  # the API takes objects, as its document says
    with pytest.raises(ValidationError, match="segment"):
        Change.model_validate({"name": "c", "effective_at": "2026-05-15T10:00:00Z", "segment": "query_type"},
                              context={SEGMENT_TEXT: True})


def test_timestamps_are_iso_text_and_ratings_whole_numbers() -> None:
    base = {"request_id": "r", "feedback_type": "implicit_usage", "value": True}
    for unix in (1_700_000_000, 1_700_000_000.5, "1700000000"):  # pydantic alone would read Unix times
        assert "timestamp" in refused_at({**base, "timestamp": unix})
    assert events.validate_python({**base, "timestamp": "2026-05-15"}).timestamp == datetime(
        2026, 5, 15, tzinfo=timezone.utc)
    assert "timestamp" in refused_at({**base, "timestamp": "1999-12-31T23:59:59Z"})
    rating = events.validate_python({"request_id": "r", "feedback_type": "explicit_rating", "value": 3.0})
    assert rating.value == 3 and type(rating.value) is int  # 3.0 is an integer to JSON Schema


DOCUMENT = json.loads((ROOT / "docs" / "openapi.json").read_text())


def published(name: str) -> "jsonschema_rs.Validator":
    """The document's schema for one component, read by jsonschema-rs (a Rust validator whose regular
    expressions follow ECMA-262, the dialect OpenAPI names), not by the Python code under test."""
    return jsonschema_rs.validator_for({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                        "$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]})


def accepted(body: dict) -> bool:
    try:
        events.validate_python(body)
    except ValidationError:
        return False
    return True


TRICKY_TEXT = ["req-1", "ünï-日本", "e\u0301", "²", "👍 ok", "a b", "#?\"`\\", "<>{}|^[]()", "a/b", "50%", "a\x00b",
               "a\x7f", "tab\t", "\x85", "\u00a0", "\x1c", "\ufeff", "\u200b", "\u3000", " ", " a ", "x" * 256,
               "x" * 257, "\u2028", ".", "..", "...", ".a."]


@pytest.mark.parametrize("text", TRICKY_TEXT)
def test_the_document_and_the_api_agree_on_text_fields(text: str) -> None:
    """Whatever the API decides about a request_id, a label or a comment, a validator of another
    regex dialect reading the published document decides the same."""
    document = published("CommentEvent")
    bodies = [{"request_id": text, "feedback_type": "explicit_text_comment", "value": "ok"},
              {"request_id": "r", "feedback_type": "explicit_text_comment", "value": text},
              {"request_id": "r", "feedback_type": "explicit_text_comment", "value": "ok", "user_cohort": text}]
    for body in bodies:
        assert accepted(body) == document.is_valid(body), body


@pytest.mark.parametrize("value", [3, 3.0, 3.5, "3", True, 0, 5, 6.0, None])
def test_the_document_and_the_api_agree_on_ratings(value: object) -> None:
    body = {"request_id": "r", "feedback_type": "explicit_rating", "value": value}
    assert accepted(body) == published("RatingEvent").is_valid(body)


@pytest.mark.parametrize("extra", [
    {}, {"segment": {"query_type": "code"}}, {"segment": {"bad key!": "v"}}, {"segment": {"k": ""}},
    {"segment": "query_type=code"}, {"segment": {f"k{i}": "v" for i in range(17)}},
    {"variant_field": "arm"}, {"variant_field": "arm", "control": "a"}, {"control": "a", "treatment": "b"},
    {"variant_field": "arm", "control": "a", "treatment": "b"}, {"variant_field": None, "control": None},
    {"variant_field": "arm", "control": "a", "treatment": None}, {"name": "has space"},
])
def test_the_document_and_the_api_agree_on_changes(extra: dict) -> None:
    body = {"name": "c-1", "effective_at": "2026-05-15T10:00:00Z", **extra}
    try:
        Change.model_validate(body)
        ok = True
    except ValidationError:
        ok = False
    assert ok == published("Change").is_valid(body)
