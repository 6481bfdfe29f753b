"""The importers on exports that the tools' own libraries made (scripts/interop_fixtures.py: traces and
judgements logged through each tool's API, exported in each form a user gets them in), checked
against what was logged (each fixture's truth.json): the counts in and out, and every event."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from feedback_loop.interop import mapping, tools

MLFLOW = Path(__file__).parent.parent / "fixtures" / "interop" / "mlflow"
MLFLOW_FORMS = ("assessments.jsonl", "traces.json", "search_traces.json")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _expected_events(assessment: dict[str, Any]) -> list[tuple[str, Any]]:
    """A person's MLflow feedback as the documented mapping turns it into events (docs/INTEROP.md),
    written out per value kind: (feedback type, value)."""
    value = assessment["logged_value"]  # as the person gave it (MLflow returns every number as a double)
    if isinstance(value, bool):
        events = [("explicit_thumbs_up" if value else "explicit_thumbs_down", True)]
    elif isinstance(value, int):
        events = [("explicit_rating", value)]
    elif value in ("yes", "no"):
        events = [("explicit_thumbs_up" if value == "yes" else "explicit_thumbs_down", True)]
    else:
        events = [("explicit_text_comment", value)]
    if assessment.get("rationale"):
        events.append(("explicit_text_comment", assessment["rationale"]))
    return events


@pytest.fixture(scope="module")
def mlflow_truth() -> dict[str, Any]:
    return json.loads((MLFLOW / "truth.json").read_text())


@pytest.mark.parametrize("form", MLFLOW_FORMS)
def test_every_persons_mlflow_judgement_is_one_event_with_its_user_and_time(mlflow_truth, form: str) -> None:
    assessments = [a for t in mlflow_truth["traces"] for a in t["assessments"]]
    people = [a for a in assessments if a["source"]["source_type"] == "HUMAN" and "feedback" in a and a["valid"]]
    overridden = [a for a in assessments if a["valid"] is False]
    expectations = [a for a in assessments if "expectation" in a]
    assert len(people) >= 60 and len(overridden) == 5 and expectations  # what the fixture holds
    assert any(a.get("overrides") for a in people)  # the reviewer's corrections of the judge

    skipped: Counter[str] = Counter()
    annotations = tools.read("mlflow", MLFLOW / form, skipped)
    assert skipped == {"not_a_judgement": len(expectations), "overridden": len(overridden)}
    imported = mapping.convert(annotations, "trace", overall="correctness")
    expected = {}
    for a in people:
        for n, (kind, value) in enumerate(_expected_events(a)):
            event_id = f"mlflow-{a['assessment_id']}" + ("-comment" if n else "")
            expected[event_id] = (a["trace_id"], kind, value, a["source"]["source_id"], _moment(a["create_time"]))
    got = {e["event_id"]: (e["request_id"], e["feedback_type"], e["value"], e.get("user_id"), _moment(e["timestamp"]))
           for e in imported.feedback}
    assert got == expected
    assert len(imported.feedback) == len(expected) > len(people)
    kinds = Counter(kind for _, kind, *_ in expected.values())
    assert kinds["explicit_rating"] >= 10 and kinds["explicit_thumbs_up"] and kinds["explicit_thumbs_down"]


@pytest.mark.parametrize("form", MLFLOW_FORMS)
def test_the_mlflow_judges_verdicts_become_eval_records_without_the_overridden_ones(mlflow_truth, form: str) -> None:
    """The built-in-style judge's "yes"/"no" is 1 or 0, the numeric judge's score and the code check's
    bool beside it; a trace whose judge was overridden has no overall (the judge's answer there is
    not valid); the trace forms carry the request and the response."""
    skipped: Counter[str] = Counter()
    imported = mapping.convert(tools.read("mlflow", MLFLOW / form), "trace", overall="correctness")
    skipped = imported.skipped
    records = {r["request_id"]: r for r in imported.eval_records}
    expected = {}
    for trace in mlflow_truth["traces"]:
        judged = {a["assessment_name"]: a for a in trace["assessments"]
                  if a["source"]["source_type"] != "HUMAN" and a["valid"]}
        if "correctness" not in judged:
            continue
        scores = {"overall": 1.0 if judged["correctness"]["feedback"]["value"] == "yes" else 0.0,
                  "relevance": judged["relevance"]["feedback"]["value"],
                  "has_answer": float(judged["has_answer"]["feedback"]["value"])}
        expected[trace["trace_id"]] = (scores, min(_moment(a["create_time"]) for a in judged.values()),
                                       trace["inputs"]["messages"][-1]["content"],
                                       trace["outputs"]["choices"][0]["message"]["content"])
    assert len(expected) == 55 and skipped["judge_scores_without_overall"] == 5
    assert set(records) == set(expected)
    for request, (scores, at, prompt, output) in expected.items():
        record = records[request]
        assert record["eval_scores"] == scores and _moment(record["timestamp"]) == at
        if form == "assessments.jsonl":  # assessments alone do not hold the trace's texts
            assert "prompt" not in record and "output" not in record
        else:
            assert (record["prompt"], record["output"]) == (prompt, output)


def test_the_three_mlflow_forms_give_the_same_events() -> None:
    events = [sorted(mapping.convert(tools.read("mlflow", MLFLOW / form), "trace").feedback,
                     key=lambda e: e["event_id"]) for form in MLFLOW_FORMS]
    assert events[0] == events[1] == events[2]


LANGFUSE = Path(__file__).parent.parent / "fixtures" / "interop" / "langfuse"
LANGFUSE_FORMS = ("scores.json", "scores_v3.json")


def _langfuse_expected(score: dict[str, Any]) -> list[tuple[str, Any]]:
    """A person's Langfuse score as the documented mapping turns it into events, per data type."""
    kind, value, label = score["kind"], score["value"], score["label"]
    if kind == "BOOLEAN":
        events = [("explicit_thumbs_up" if value else "explicit_thumbs_down", True)]
    elif kind == "NUMERIC":
        events = [("explicit_rating", round(1 + 4 * value))]  # a 0-1 score
    elif kind == "CORRECTION":
        events = [("implicit_edit", label)]
    else:  # TEXT, and a category whose label is not a thumb
        events = [("explicit_text_comment", label)]
    if score["comment"]:
        events.append(("explicit_text_comment", score["comment"]))
    return events


@pytest.mark.parametrize("form", LANGFUSE_FORMS)
def test_every_persons_langfuse_score_is_one_event_with_its_type_value_user_and_time(form: str) -> None:
    truth = json.loads((LANGFUSE / "truth.json").read_text())
    scores = truth["scores"]
    people = [s for s in scores if s["source"] in ("API", "ANNOTATION") and s["trace"]]
    on_sessions = [s for s in scores if not s["trace"]]
    assert {s["kind"] for s in people} == {"BOOLEAN", "NUMERIC", "TEXT", "CATEGORICAL", "CORRECTION"} and on_sessions
    assert len({s["user"] for s in people if s["user"]}) >= 5  # the app's users, in the scores' metadata
    skipped: Counter[str] = Counter()
    imported = mapping.convert(tools.read("langfuse", LANGFUSE / form, skipped), "trace", overall="correctness")
    assert skipped == {"no_trace_or_span": len(on_sessions)}
    expected = {}
    for s in people:
        for n, (kind, value) in enumerate(_langfuse_expected(s)):
            expected[f"langfuse-{s['id']}" + ("-comment" if n else "")] = (s["trace"], kind, value,
                                                                          s["author"] or s["user"], _moment(s["at"]))
    got = {e["event_id"]: (e["request_id"], e["feedback_type"], e["value"], e.get("user_id"), _moment(e["timestamp"]))
           for e in imported.feedback}
    assert got == expected
    assert Counter(kind for _, kind, *_ in expected.values())["implicit_edit"] == sum(
        s["kind"] == "CORRECTION" for s in people) > 0


@pytest.mark.parametrize("form", LANGFUSE_FORMS)
def test_the_langfuse_judges_scores_become_eval_records_whatever_their_data_type(form: str) -> None:
    """The categorical judge's label (correct/incorrect) is 1 or 0, the numeric judge's score and the
    boolean check beside it, at the first score's time."""
    truth = json.loads((LANGFUSE / "truth.json").read_text())
    judged: dict[str, dict[str, Any]] = {}
    for s in truth["scores"]:
        if s["source"] == "EVAL":
            judged.setdefault(s["trace"], {})[s["name"]] = s
    imported = mapping.convert(tools.read("langfuse", LANGFUSE / form), "trace", overall="correctness")
    records = {r["request_id"]: r for r in imported.eval_records}
    assert set(records) == set(judged) and len(records) == 60
    for trace, named in judged.items():
        assert records[trace]["eval_scores"] == {"overall": 1.0 if named["correctness"]["label"] == "correct" else 0.0,
                                                 "helpfulness": named["helpfulness"]["value"],
                                                 "no_pii": float(named["no_pii"]["value"])}
        assert _moment(records[trace]["timestamp"]) == min(_moment(s["at"]) for s in named.values())


def test_the_two_langfuse_shapes_give_the_same_events_and_records() -> None:
    found = [mapping.convert(tools.read("langfuse", LANGFUSE / form), "trace", overall="correctness")
             for form in LANGFUSE_FORMS]
    assert found[0].feedback == found[1].feedback and found[0].eval_records == found[1].eval_records


PHOENIX = Path(__file__).parent.parent / "fixtures" / "interop" / "phoenix"


def _phoenix_expected(annotation: dict[str, Any]) -> tuple[str, Any]:
    """A person's Phoenix annotation as the documented mapping turns it into one event."""
    if annotation["label"] in ("thumbs_up", "thumbs_down"):
        return annotation["label"].replace("thumbs", "explicit_thumbs"), True
    if annotation["score"] is not None:
        return "explicit_rating", int(annotation["score"])  # a 1-5 rating, kept by Phoenix as a double
    if annotation["label"] is not None:
        return "explicit_text_comment", annotation["label"]  # a category
    return "explicit_text_comment", annotation["explanation"]  # an explanation alone, or a note


@pytest.mark.parametrize("form", ["span_annotations.json", "span_annotations_dataframe.json"])
def test_every_persons_phoenix_annotation_is_one_event_with_its_user_and_nothing_is_skipped(form: str) -> None:
    """Thumbs (label and score), ratings (a score), categories (a label), explanations alone and notes:
    one event each, the user from the annotation's metadata (Phoenix's own user_id is null for what
    the API wrote), and no annotation counted as skipped."""
    truth = json.loads((PHOENIX / "truth.json").read_text())
    exported = tools._objects(PHOENIX / form)
    by_place = {(o["span_id"], o.get("name") or o.get("annotation_name")): o for o in exported}
    people = [a for a in truth["annotations"] if a["kind"] == "HUMAN" and (a["span_id"], a["name"]) in by_place]
    if form == "span_annotations.json":
        assert {a["name"] for a in people} == {"user_feedback", "rating", "issue", "reason", "note"}
    else:  # the client's DataFrame leaves the notes out
        assert {a["name"] for a in people} == {"user_feedback", "rating", "issue", "reason"}
    skipped: Counter[str] = Counter()
    imported = mapping.convert(tools.read("phoenix", PHOENIX / form, skipped), "span", overall="correctness")
    assert skipped == {} and imported.skipped == {}
    expected = {}
    for a in people:
        kind, value = _phoenix_expected(a)
        found = by_place[(a["span_id"], a["name"])]
        alone = a["label"] is None and a["score"] is None  # an explanation alone: its comment's id, as before
        expected[mapping._event_id(tools._phoenix(found), "-comment" if alone else "")] = (
            a["span_id"], kind, value, a["user"], _moment(found["created_at"]))
    got = {e["event_id"]: (e["request_id"], e["feedback_type"], e["value"], e.get("user_id"), _moment(e["timestamp"]))
           for e in imported.feedback}
    assert got == expected
    assert Counter(kind for _, kind, *_ in expected.values())["explicit_rating"] >= 5


@pytest.mark.parametrize("form", ["span_annotations.json", "span_annotations_dataframe.json"])
def test_the_phoenix_judges_label_and_score_give_eval_records(form: str) -> None:
    """A judge's label with its score (correct, 1.0), a score alone, a code check's pass: one eval
    record per span with `--overall correctness`, its score the judge's number."""
    truth = json.loads((PHOENIX / "truth.json").read_text())
    imported = mapping.convert(tools.read("phoenix", PHOENIX / form), "span", overall="correctness")
    records = {r["request_id"]: r for r in imported.eval_records}
    assert len(records) == 60
    judged: dict[str, dict[str, Any]] = {}
    for a in truth["annotations"]:
        if a["kind"] != "HUMAN":
            judged.setdefault(a["span_id"], {})[a["name"]] = a["score"]
    for span_id, scores in judged.items():
        assert records[span_id]["eval_scores"] == {"overall": scores["correctness"], "relevance": scores["relevance"],
                                                   "has_answer": scores["has_answer"]}


def test_the_phoenix_forms_give_the_same_events() -> None:
    rest = mapping.convert(tools.read("phoenix", PHOENIX / "span_annotations.json"), "span").feedback
    frame = mapping.convert(tools.read("phoenix", PHOENIX / "span_annotations_dataframe.json"), "span").feedback
    assert [e for e in rest if e["metadata"]["name"] != "note"] == frame


def test_feedback_through_a_real_phoenix_comes_back_with_its_identity() -> None:
    """Events exported with `--format openinference`, posted to a real Phoenix and read back from it:
    the same event ids (so the API stores nothing twice), times, users, cohorts, types and values,
    although Phoenix replaced created_at and user_id with its own."""
    sent = [json.loads(line) for line in (PHOENIX / "roundtrip_events.jsonl").read_text().splitlines()]
    back = json.loads((PHOENIX / "roundtrip_span_annotations.json").read_text())["data"]
    assert all(a["user_id"] is None for a in back) and {a["created_at"][:10] for a in back} != {"2026-05-12"}
    imported = mapping.convert(tools.read("phoenix", PHOENIX / "roundtrip_span_annotations.json"), "span")
    assert imported.skipped == {}
    keys = ("event_id", "request_id", "feedback_type", "value", "user_id", "user_cohort")

    def key(e: dict) -> tuple:
        return (*(e.get(k) for k in keys), _moment(e["timestamp"]), json.dumps(e.get("metadata"), sort_keys=True))

    assert sorted(map(key, imported.feedback)) == sorted(map(key, sent))
    assert sum(bool(e.get("metadata")) for e in sent) >= 10  # the events' own metadata went there and back


@pytest.mark.parametrize("spans", ["spans.json", "spans_dataframe.json"])
def test_the_phoenix_spans_export_gives_the_eval_records_their_texts(spans: str, tmp_path: Path) -> None:
    """`feedback-loop import phoenix ... --spans FILE`: each eval record carries its span's request
    (the last user message) and response, from either form of Phoenix's spans export."""
    from feedback_loop.cli import main

    truth = json.loads((PHOENIX / "truth.json").read_text())
    assert main(["import", "phoenix", str(PHOENIX / "span_annotations.json"), "--out", str(tmp_path),
                 "--overall", "correctness", "--spans", str(PHOENIX / spans)]) == 0
    records = [json.loads(line) for line in (tmp_path / "eval-records.jsonl").read_text().splitlines()]
    texts = {s["span_id"]: (s["prompt"], s["output"]) for s in truth["spans"]}
    assert len(records) == 60 and all((r["prompt"], r["output"]) == texts[r["request_id"]] for r in records)
    with pytest.raises(SystemExit, match="--spans"):
        main(["import", "phoenix", str(PHOENIX / "span_annotations.json"), "--out", str(tmp_path),
              "--spans", str(tmp_path / "missing.json")])


@pytest.mark.parametrize("form", ["roundtrip_scores.json", "roundtrip_scores_v3.json"])
def test_feedback_exported_to_langfuse_comes_back_exactly_as_sent(form: str) -> None:
    """`feedback-loop export --format langfuse`: each body read by the Langfuse SDK's CreateScoreRequest
    (scripts/interop_fixtures.py), listed back in either shape as Langfuse stores a created score, and
    imported: every event with its own id and the very body the API fingerprints, so sending them again
    stores nothing twice."""
    from pydantic import TypeAdapter

    from feedback_loop.logic.ingest import fingerprint
    from feedback_loop.models.feedback import FeedbackEventIn

    sent = [json.loads(line) for line in (LANGFUSE / "roundtrip_events.jsonl").read_text().splitlines()]
    assert {e["feedback_type"] for e in sent} == {"explicit_thumbs_up", "explicit_thumbs_down", "explicit_rating",
                                                  "explicit_text_comment", "implicit_edit", "implicit_usage",
                                                  "implicit_discard"}
    imported = mapping.convert(tools.read("langfuse", LANGFUSE / form), "trace")
    assert imported.skipped == {} and imported.eval_records == []
    body = TypeAdapter(FeedbackEventIn)
    assert ({e["event_id"]: fingerprint(body.validate_python(e)) for e in imported.feedback}
            == {e["event_id"]: fingerprint(body.validate_python(e)) for e in sent})


def test_feedback_logged_to_a_real_mlflow_comes_back_exactly_as_sent() -> None:
    """`feedback-loop export --format mlflow`: each line logged to an MLflow store with
    Assessment.from_dictionary and mlflow.log_assessment (scripts/interop_fixtures.py), the traces'
    assessments read back and imported: every event with its own id and the very body the API
    fingerprints, although MLflow gave each assessment its own id."""
    from pydantic import TypeAdapter

    from feedback_loop.logic.ingest import fingerprint
    from feedback_loop.models.feedback import FeedbackEventIn

    sent = [json.loads(line) for line in (MLFLOW / "roundtrip_events.jsonl").read_text().splitlines()]
    logged = [json.loads(line) for line in (MLFLOW / "roundtrip_assessments.jsonl").read_text().splitlines()]
    assert len(logged) == len(sent) == 40 and all(a["assessment_id"].startswith("a-") for a in logged)
    imported = mapping.convert(tools.read("mlflow", MLFLOW / "roundtrip_assessments.jsonl"), "trace")
    assert imported.skipped == {}
    body = TypeAdapter(FeedbackEventIn)
    assert ({e["event_id"]: fingerprint(body.validate_python(e)) for e in imported.feedback}
            == {e["event_id"]: fingerprint(body.validate_python(e)) for e in sent})
