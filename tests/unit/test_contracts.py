"""The data contracts' JSON Schemas (docs/schemas/) are what the models generate, and a JSON Schema
validator (jsonschema, Draft 2020-12) takes and refuses what the models take and refuse."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import TypeAdapter, ValidationError

from feedback_loop.models import contracts
from feedback_loop.models.changes import Change
from feedback_loop.models.evallog import EvalRecord
from feedback_loop.models.feedback import FeedbackEventIn
from feedback_loop.simulate import Scenario, simulate

from ..conftest import ROOT

FOLDER = ROOT / "docs" / "schemas"


def test_the_schema_files_are_what_the_models_generate() -> None:
    """Run `feedback-loop schemas --out docs/schemas` after changing a model."""
    generated = contracts.schemas()
    assert {p.name for p in FOLDER.iterdir()} == {f"{name}.schema.json" for name in generated}
    for name, schema in generated.items():
        assert (FOLDER / f"{name}.schema.json").read_text() == contracts.text(schema), name
        jsonschema.Draft202012Validator.check_schema(schema)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((FOLDER / f"{name}.schema.json").read_text()))


def _agree(name: str, model: TypeAdapter, instance: object) -> bool:
    """Whether the schema and the model give the same verdict; returns it."""
    by_schema = _validator(name).is_valid(instance)
    try:
        model.validate_python(instance)
        by_model = True
    except ValidationError:
        by_model = False
    assert by_schema == by_model, (name, instance, by_schema, by_model)
    return by_model


RECORDS, EVENTS = simulate(Scenario(requests=200, seed=3))
GOOD = RECORDS[0]


@pytest.mark.parametrize(("change", "valid"), [
    ({}, True),
    ({"eval_scores": {"overall": 0.4, "coherence": 0.9, "helpfulness": 1}}, True),
    ({"extra_field": "kept", "metadata": {"user_cohort": "pro", "nested": {"a": 1}}}, True),
    ({"prompt": [{"role": "user", "content": "hi"}], "output": None}, True),
    ({"eval_scores": {"overall": 1.5}}, False),
    ({"eval_scores": {"overall": -0.1}}, False),
    ({"eval_scores": {"coherence": 0.5}}, False),
    ({"eval_scores": {"overall": 0.5, "coherence": "high"}}, False),
    ({"eval_scores": {"overall": "0.5"}}, False),
    ({"request_id": ""}, False),
    ({"request_id": "a/b"}, False),
    ({"request_id": 17}, False),
    ({"timestamp": 1715767200}, False),
    ({"metadata": "pro"}, False),
])
def test_eval_records_are_judged_alike_by_the_schema_and_the_model(change, valid) -> None:
    record = {**GOOD, **change}
    assert _agree("eval-record", TypeAdapter(EvalRecord), record) is valid


def test_every_simulated_record_and_event_is_valid() -> None:
    events = TypeAdapter(FeedbackEventIn)
    assert all(_agree("eval-record", TypeAdapter(EvalRecord), r) for r in RECORDS)
    assert all(_agree("feedback-export-line", events, e) for e in EVENTS)
    assert all(_validator("feedback-event").is_valid(e) for e in EVENTS)


@pytest.mark.parametrize(("event", "valid"), [
    ({"request_id": "r1", "feedback_type": "explicit_rating", "value": 4}, True),
    ({"request_id": "r1", "feedback_type": "explicit_rating", "value": 6}, False),
    ({"request_id": "r1", "feedback_type": "explicit_thumbs_up", "value": False}, False),
    ({"request_id": "r1", "feedback_type": "implicit_edit", "value": "the edited text"}, True),
    ({"request_id": "r1", "feedback_type": "explicit_text_comment", "value": "   "}, False),
    ({"request_id": "r1", "feedback_type": "explicit_like", "value": True}, False),
    ({"request_id": "r1", "feedback_type": "explicit_thumbs_up", "value": True, "project": "p"}, False),
])
def test_feedback_events_are_judged_alike_by_the_schema_and_the_model(event, valid) -> None:
    assert _agree("feedback-event", TypeAdapter(FeedbackEventIn), event) is valid


def test_an_export_line_needs_its_timestamp() -> None:
    event = {"request_id": "r1", "feedback_type": "explicit_thumbs_down", "value": True}
    assert _validator("feedback-event").is_valid(event)
    assert not _validator("feedback-export-line").is_valid(event)
    assert _validator("feedback-export-line").is_valid({**event, "timestamp": "2026-05-15T10:00:00Z"})


@pytest.mark.parametrize(("change", "valid"), [
    ({"name": "prompt-v8", "effective_at": "2026-05-11T00:00:00Z", "segment": {"query_type": "code"}}, True),
    ({"name": "ab", "effective_at": "2026-05-11T00:00:00Z", "variant_field": "arm", "control": "a",
      "treatment": "b"}, True),
    ({"name": "has space", "effective_at": "2026-05-11T00:00:00Z"}, False),
    ({"name": "ab", "effective_at": "2026-05-11T00:00:00Z", "variant_field": "arm", "control": "a"}, False),
])
def test_changes_are_judged_alike_by_the_schema_and_the_model(change, valid) -> None:
    assert _agree("change", TypeAdapter(Change), change) is valid


def test_the_contracts_document_links_every_schema() -> None:
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    for path in FOLDER.iterdir():
        assert f"(schemas/{path.name})" in text, path.name
    assert "../shared" not in text and "../shared" not in (ROOT / "README.md").read_text()
