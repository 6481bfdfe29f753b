"""Importers from Langfuse, MLflow and Phoenix exports (fixtures written from each tool's published
score / assessment / span-annotation schema), and the exporters, round trip included."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from google.protobuf.json_format import Parse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from feedback_loop.interop import export, mapping, tools
from feedback_loop.simulate import Scenario, simulate

FIXTURES = Path(__file__).parent.parent / "fixtures" / "interop"


def _by(imported: mapping.Imported) -> dict[tuple[str, str], dict]:
    return {(e["request_id"], e["feedback_type"]): e for e in imported.feedback}


def test_langfuse_scores() -> None:
    skipped: Counter[str] = Counter()
    imported = mapping.convert(tools.read("langfuse", FIXTURES / "langfuse_scores.json", skipped), "trace",
                               overall="correctness")
    events = _by(imported)
    assert events[("tr-001", "explicit_thumbs_up")]["value"] is True  # BOOLEAN from the SDK (source API)
    # "stars" has scores above 1: a 1-5 rating; "satisfaction" is 0-1: 0.5 is the middle of five
    assert events[("tr-002", "explicit_rating")]["value"] == 4 and events[("tr-003", "explicit_rating")]["value"] == 5
    assert events[("tr-004", "explicit_rating")]["value"] == 3
    assert events[("tr-004", "explicit_rating")]["user_id"] == "reviewer-1"
    assert events[("tr-002", "explicit_text_comment")]["value"] == "Good, a little long."
    assert events[("tr-005", "explicit_thumbs_down")]["value"] is True  # the label "bad"
    assert events[("tr-006", "explicit_text_comment")]["value"] == "too verbose"
    assert events[("tr-002", "explicit_rating")]["timestamp"] == "2026-05-12T11:00:00Z"
    assert events[("tr-002", "explicit_rating")]["event_id"] == "langfuse-sc-2"
    assert skipped == {"no_trace_or_span": 1}
    # the judge's (source EVAL) scores of tr-002 make one eval record, timed at the first
    assert imported.eval_records == [{"request_id": "tr-002", "timestamp": "2026-05-12T11:04:00Z",
                                      "eval_scores": {"overall": 0.8, "conciseness": 0.4},
                                      "metadata": {"imported_from": "langfuse"}}]
    assert len(imported.feedback) == 7


def test_mlflow_assessments() -> None:
    skipped: Counter[str] = Counter()
    imported = mapping.convert(tools.read("mlflow", FIXTURES / "mlflow_assessments.jsonl", skipped), "trace",
                               overall="relevance")
    events = _by(imported)
    up = events[("tr-101", "explicit_thumbs_up")]
    # create_time in milliseconds since the epoch
    assert up["user_id"] == "user-42" and up["timestamp"] == datetime.fromtimestamp(
        1778580000, timezone.utc).isoformat().replace("+00:00", "Z")
    assert events[("tr-101", "explicit_text_comment")]["value"] == "Solved my problem."
    assert events[("tr-102", "explicit_thumbs_down")]["user_id"] == "user-43"
    assert skipped == {"not_a_judgement": 1}  # the expectation (ground truth)
    # an LLM judge's and a code check's scores (a bool as 1)
    assert {r["request_id"]: r["eval_scores"]["overall"] for r in imported.eval_records} == {"tr-101": 0.9,
                                                                                            "tr-102": 1.0}


def test_phoenix_span_annotations() -> None:
    imported = mapping.convert(tools.read("phoenix", FIXTURES / "phoenix_span_annotations.json"), "span",
                               overall="hallucination")
    events = _by(imported)
    assert events[("5f3a1c2b9d8e7f60", "explicit_thumbs_up")]["user_id"] == "reviewer-2"  # the label "correct"
    assert events[("5f3a1c2b9d8e7f60", "explicit_text_comment")]["value"] == "Matches the docs."
    assert events[("6a4b2d3c0e9f8a71", "explicit_rating")]["value"] == 2  # 0.25 on 0-1
    assert [r["eval_scores"] for r in imported.eval_records] == [{"overall": 0.95}]
    # without the judge's name for overall, its scores make no record, and say so
    assert mapping.convert(tools.read("phoenix", FIXTURES / "phoenix_span_annotations.json"), "span").skipped == {
        "judge_scores_without_overall": 1}


def test_what_breaks_the_contract_is_skipped_with_its_reason(tmp_path: Path) -> None:
    rows = [{"id": "x1", "traceId": "a/b", "name": "stars", "value": 4, "dataType": "NUMERIC", "source": "API",
             "timestamp": "2026-05-12T10:00:00Z"},
            {"id": "x2", "traceId": "t", "name": "stars", "value": 4.5, "dataType": "NUMERIC", "source": "API",
             "timestamp": "2026-05-12T10:00:00Z"},
            {"id": "x3", "traceId": "t", "name": "stars", "value": 4, "dataType": "NUMERIC", "source": "API"},
            "not an object"]
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    skipped: Counter[str] = Counter()
    imported = mapping.convert(tools.read("langfuse", path, skipped))
    assert imported.feedback == []
    assert skipped == {"not_an_object": 2}
    # a request id the API refuses; a 4.5 on a 1-5 scale; no time
    assert imported.skipped == {"invalid_request_id": 1, "no_value": 1, "no_time": 1}


def _simulated_feedback() -> list[dict]:
    _, events = simulate(Scenario(requests=300, seed=4))
    return events


def test_feedback_exported_as_openinference_imports_back_unchanged(tmp_path: Path) -> None:
    """Every event (thumbs, ratings, comments, used, edited, discarded) as a HUMAN span annotation,
    read back by the Phoenix importer: the same request, type, value, user, cohort and time."""
    events = _simulated_feedback()
    for event in events[::3]:  # the event's own metadata goes there and back too
        event["metadata"] = {"app": "support-bot", "screen": "chat"}
    assert {e["feedback_type"] for e in events} >= {"explicit_thumbs_up", "explicit_rating", "explicit_text_comment",
                                                    "implicit_edit", "implicit_usage"}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(export.span_annotations(events)))
    imported = mapping.convert(tools.read("phoenix", path), "span")
    assert imported.skipped == {} and imported.eval_records == []

    def key(e: dict) -> tuple:
        return (e["request_id"], e["feedback_type"], e["value"], e.get("user_id"), e.get("user_cohort"),
                datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")))

    assert sorted(map(key, imported.feedback)) == sorted(map(key, events))
    # the same identity and body: sent to the API again, every event is a duplicate (the API's own
    # fingerprint of what was sent), nothing stored twice and nothing refused as a different body
    from pydantic import TypeAdapter

    from feedback_loop.logic.ingest import fingerprint
    from feedback_loop.models.feedback import FeedbackEventIn

    sent = TypeAdapter(FeedbackEventIn)
    original = {e["event_id"]: fingerprint(sent.validate_python(e)) for e in events}
    assert {e["event_id"]: fingerprint(sent.validate_python(e)) for e in imported.feedback} == original


def test_feedback_exported_as_otel_evaluation_events() -> None:
    """OTLP/JSON that the official protobuf messages parse back: one gen_ai.evaluation.result log
    record per event, with the semantic conventions' attributes and the event's human score."""
    events = _simulated_feedback()[:50]
    text = export.otlp_json(events, "my-app")
    assert '"resourceLogs"' in text and '"eventName": "gen_ai.evaluation.result"' in text
    request = Parse(text, ExportLogsServiceRequest())
    [resource] = request.resource_logs
    assert resource.resource.attributes[0].value.string_value == "my-app"
    records = resource.scope_logs[0].log_records
    assert len(records) == len(events)
    for record, event in zip(records, events):
        attributes = {a.key: a.value for a in record.attributes}
        assert record.event_name == "gen_ai.evaluation.result"
        assert attributes["gen_ai.response.id"].string_value == event["request_id"]
        assert attributes["gen_ai.evaluation.name"].string_value == event["feedback_type"]
        expected = {"explicit_thumbs_up": 1.0, "explicit_thumbs_down": 0.0, "implicit_usage": 1.0,
                    "implicit_discard": 0.0}.get(event["feedback_type"])
        if event["feedback_type"] == "explicit_rating":
            expected = (event["value"] - 1) / 4
        if expected is None:
            assert "gen_ai.evaluation.score.value" not in attributes
            assert attributes["gen_ai.evaluation.explanation"].string_value == event["value"]
        else:
            assert attributes["gen_ai.evaluation.score.value"].double_value == pytest.approx(expected)
        moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        assert record.time_unix_nano == int(moment.timestamp() * 1e6) * 1000
