"""The feedback event and change contracts: what is accepted, what is refused, and at which field."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from feedback_loop.models.changes import Change
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
    text = Change.model_validate({"name": "c", "effective_at": "2026-05-15T10:00:00Z",
                                  "segment": "metadata.query_type=code, model=m-2"})
    assert text.segment == {"metadata.query_type": "code", "model": "m-2"}
    with pytest.raises(ValidationError, match="segment"):
        Change.model_validate({"name": "c", "effective_at": "2026-05-15T10:00:00Z", "segment": "query_type"})
