"""The importers' test fixtures, made by each tool's own library (not written by hand): traces and
their judgements logged through the tool's API, then exported in each form a user gets them in.

    python -m venv /tmp/interop && /tmp/interop/bin/pip install "mlflow==3.18.0" "langfuse==5.2.0" \
        "arize-phoenix==20.26.1" "arize-phoenix-client==3.5.0"
    MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false /tmp/interop/bin/python scripts/interop_fixtures.py mlflow
    /tmp/interop/bin/python scripts/interop_fixtures.py langfuse
    /tmp/interop/bin/python scripts/interop_fixtures.py phoenix

writes tests/fixtures/interop/<tool>/ (tests/unit/test_interop_real.py reads them). MLflow:
- `assessments.jsonl`: every assessment, `Assessment.to_dictionary()` a line;
- `traces.json`: `Trace.to_dict()` of every trace (its assessments, inputs and outputs inside);
- `search_traces.json`: `mlflow.search_traces()` as `DataFrame.to_json(orient="records")` (the
  `trace` column is the trace's JSON text, `request_time` milliseconds, `request` and `response`
  the inputs and outputs);
- `truth.json`: what was logged, as the library returned it: each trace's id, inputs, outputs and
  each assessment (id, name, source, value, rationale, create time, whether it is valid, what it
  overrides), and the library's version.

The judgements are those of a chat app with an LLM judge: every trace has MLflow's built-in-style
judge answer `correctness` ("yes"/"no", with a rationale), a numeric judge `relevance` (0-1) and a
code check `has_answer` (a bool); people gave thumbs (a bool), 1-5 ratings (integers), comments
(text feedback named `comment`), a category (`issue_type`), corrections of the judge
(`override_feedback` of `correctness`, which marks the judge's assessment `valid: false`), and
expected answers (expectations: ground truth, not feedback).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "interop"
TRACES = 60
QUESTIONS = ["How do I reset my password?", "What is the refund window?", "Summarise the Q3 notes.",
             "Write a SQL query for monthly revenue.", "Which plan includes SSO?", "Translate 'thank you' to French."]


def mlflow_fixtures(out: Path, seed: int = 31) -> dict[str, Any]:
    import mlflow
    from mlflow.entities import AssessmentSource

    out.mkdir(parents=True, exist_ok=True)
    store = out / "mlflow.db"
    store.unlink(missing_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    mlflow.set_experiment("feedback-loop-fixtures")
    rng = random.Random(seed)
    judge = AssessmentSource(source_type="LLM_JUDGE", source_id="openai:/gpt-4o-mini")
    code = AssessmentSource(source_type="CODE", source_id="checks.has_answer")
    truth: dict[str, Any] = {"mlflow": mlflow.__version__, "traces": []}
    for i in range(TRACES):
        question = QUESTIONS[i % len(QUESTIONS)] + f" (#{i})"
        answer = f"Answer {i}: " + rng.choice(["See the settings page.", "Within 30 days.", "It depends.", ""])
        inputs = {"messages": [{"role": "user", "content": question}]}
        outputs = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
        with mlflow.start_span(name="chat") as span:
            span.set_inputs(inputs)
            span.set_outputs(outputs)
        trace_id = mlflow.get_last_active_trace_id()
        logged = []
        correct = rng.random() < 0.7
        verdict = mlflow.log_feedback(trace_id=trace_id, name="correctness", value="yes" if correct else "no",
                                      source=judge, rationale="The answer addresses the question." if correct
                                      else "The answer does not address the question.")
        logged.append(verdict)
        logged.append(mlflow.log_feedback(trace_id=trace_id, name="relevance", value=round(rng.random(), 2),
                                          source=judge))
        logged.append(mlflow.log_feedback(trace_id=trace_id, name="has_answer", value=bool(answer.split(": ")[1]),
                                          source=code))
        user = AssessmentSource(source_type="HUMAN", source_id=f"user-{rng.randrange(12)}")
        draw = rng.random()
        if draw < 0.4:
            logged.append(mlflow.log_feedback(trace_id=trace_id, name="user_thumbs", value=rng.random() < 0.6,
                                              source=user))
        elif draw < 0.65:
            logged.append(mlflow.log_feedback(trace_id=trace_id, name="user_rating", value=rng.randint(1, 5),
                                              source=user, rationale=rng.choice([None, "Clear.", "Too long."])))
        elif draw < 0.8:
            logged.append(mlflow.log_feedback(trace_id=trace_id, name="comment", value="The link is broken.",
                                              source=user))
        elif draw < 0.9:
            logged.append(mlflow.log_feedback(trace_id=trace_id, name="issue_type",
                                              value=rng.choice(["hallucination", "formatting"]), source=user))
        if i % 12 == 5:  # a reviewer corrects the judge: the judge's assessment becomes invalid
            reviewer = AssessmentSource(source_type="HUMAN", source_id="reviewer-1")
            logged.append(mlflow.override_feedback(trace_id=trace_id, assessment_id=verdict.assessment_id,
                                                   value="no" if correct else "yes", source=reviewer,
                                                   rationale="The judge got this one wrong."))
        if i % 10 == 3:
            logged.append(mlflow.log_expectation(trace_id=trace_id, name="expected_response",
                                                 value=f"Expected answer {i}", source=user))
        trace = mlflow.get_trace(trace_id)
        # what each assessment was logged with (MLflow keeps every number as a double: a rating of 3 reads 3.0)
        given = {a.assessment_id: (a.feedback or a.expectation).value for a in logged}
        truth["traces"].append({"trace_id": trace_id, "inputs": inputs, "outputs": outputs,
                                "assessments": [{**a.to_dictionary(), "logged_value": given.get(a.assessment_id)}
                                                for a in trace.info.assessments]})
    traces = mlflow.search_traces(return_type="list", max_results=10 * TRACES)
    with open(out / "assessments.jsonl", "w") as lines:
        for trace in traces:
            for assessment in trace.info.assessments:
                lines.write(json.dumps(assessment.to_dictionary()) + "\n")
    (out / "traces.json").write_text(json.dumps([t.to_dict() for t in traces], indent=1))
    (out / "search_traces.json").write_text(mlflow.search_traces(max_results=10 * TRACES).to_json(orient="records"))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))

    # the round trip: feedback on these traces exported by `feedback-loop export --format mlflow`, each line
    # logged with Assessment.from_dictionary and mlflow.log_assessment, and the traces' assessments read back
    import sys

    from mlflow.entities import Assessment

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "domain"))
    from feedback_loop.interop.export import mlflow_assessments

    events = _roundtrip_events([t["trace_id"] for t in truth["traces"][:40]])
    for line in mlflow_assessments(events):
        mlflow.log_assessment(trace_id=line["trace_id"], assessment=Assessment.from_dictionary(line))
    ours = {e["event_id"] for e in events}
    with open(out / "roundtrip_assessments.jsonl", "w") as lines:
        for trace in mlflow.search_traces(return_type="list", max_results=10 * TRACES):
            for assessment in trace.info.assessments:
                if (assessment.metadata or {}).get("event_id") in ours:
                    lines.write(json.dumps(assessment.to_dictionary()) + "\n")
    (out / "roundtrip_events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    store.unlink()
    return truth


def langfuse_fixtures(out: Path, seed: int = 37) -> dict[str, Any]:
    """Langfuse scores built with the Langfuse SDK's own API models (its generated client's types),
    written as the two pages a user exports: the documented score shape (`GET /api/public/scores`:
    `Score_Numeric`, `Score_Categorical`, `Score_Boolean`, `Score_Text`, `Score_Correction` under
    `data`) and the shape the current score-listing API returns (`GET /api/public/v3/scores`:
    `GetScoresV3Response`, each score's `subject` naming its trace, observation or session)."""
    from datetime import datetime, timedelta, timezone

    import langfuse
    from langfuse import api

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    start = datetime(2026, 5, 11, 9, tzinfo=timezone.utc)
    v1: list[Any] = []
    v3: list[Any] = []
    truth: dict[str, Any] = {"langfuse": langfuse.__version__, "scores": []}

    def add(kind: str, trace: str | None, name: str, source: str, at: datetime, value: Any, label: str | None = None,
            observation: str | None = None, session: str | None = None, author: str | None = None,
            comment: str | None = None, user: str | None = None) -> None:
        number = len(truth["scores"])
        # the app's end user, where apps put it (a score has no field for it: authorUserId is an annotator)
        common = dict(id=f"score-{number:03d}", name=name, source=source, timestamp=at, created_at=at, updated_at=at,
                      environment="default", author_user_id=author, comment=comment,
                      metadata={"user_id": user} if user else None)
        v1_types = {"NUMERIC": api.Score_Numeric, "CATEGORICAL": api.Score_Categorical, "BOOLEAN": api.Score_Boolean,
                    "TEXT": api.Score_Text, "CORRECTION": api.Score_Correction}
        extra: dict[str, Any] = {"value": value} if kind == "NUMERIC" else \
            {"value": value, "string_value": label} if kind in ("CATEGORICAL", "CORRECTION") else \
            {"value": float(value), "string_value": str(bool(value))} if kind == "BOOLEAN" else {"string_value": label}
        v1.append(v1_types[kind](data_type=kind, trace_id=trace, observation_id=observation, session_id=session,
                                 **common, **extra))
        if session is not None:
            subject = api.ScoreSubjectV3_Session(kind="session", id=session)
        elif observation is not None:
            subject = api.ScoreSubjectV3_Observation(kind="observation", id=observation, trace_id=trace)
        else:
            subject = api.ScoreSubjectV3_Trace(kind="trace", id=trace)
        v3_types = {"NUMERIC": api.ScoreV3_Numeric, "CATEGORICAL": api.ScoreV3_Categorical,
                    "BOOLEAN": api.ScoreV3_Boolean, "TEXT": api.ScoreV3_Text, "CORRECTION": api.ScoreV3_Correction}
        v3_value = value if kind in ("NUMERIC", "BOOLEAN") else label
        v3.append(v3_types[kind](data_type=kind, project_id="fixtures", subject=subject, value=v3_value, **common))
        truth["scores"].append({"id": common["id"], "kind": kind, "trace": trace, "observation": observation,
                                "session": session, "name": name, "source": source, "at": at.isoformat(),
                                "value": value, "label": label, "author": author, "comment": comment, "user": user})

    for i in range(TRACES):
        trace, at = f"trace-{i:03d}", start + timedelta(minutes=37 * i)
        helpful = round(rng.random(), 2)
        add("NUMERIC", trace, "helpfulness", "EVAL", at + timedelta(seconds=5), helpful,
            comment="The answer covers the question." if helpful > 0.5 else "The answer misses the point.")
        correct = rng.random() < 0.7
        add("CATEGORICAL", trace, "correctness", "EVAL", at + timedelta(seconds=6), 1.0 if correct else 0.0,
            label="correct" if correct else "incorrect")
        add("BOOLEAN", trace, "no_pii", "EVAL", at + timedelta(seconds=7), rng.random() < 0.9)
        draw, later = rng.random(), at + timedelta(minutes=3)
        user = f"user-{rng.randrange(10)}"
        if draw < 0.35:  # the app's thumbs, sent with the SDK (source API), on the generation
            add("BOOLEAN", trace, "user_feedback", "API", later, rng.random() < 0.6, observation=f"obs-{i:03d}",
                user=user)
        elif draw < 0.55:
            add("NUMERIC", trace, "satisfaction", "API", later, rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]),
                comment=rng.choice([None, "Fast.", "Not what I asked."]), user=user)
        elif draw < 0.7:
            add("TEXT", trace, "user_comment", "API", later, None, label="Please add sources.", user=user)
        elif draw < 0.8:
            add("CATEGORICAL", trace, "issue", "ANNOTATION", later, float(rng.randrange(2)),
                label=rng.choice(["hallucination", "formatting"]), author="reviewer-1")
        if i % 9 == 4:  # a reviewer's corrected answer
            add("CORRECTION", trace, "correction", "ANNOTATION", later + timedelta(minutes=1), 0.0,
                label=f"The corrected answer {i}.", author="reviewer-2")
        if i % 15 == 7:  # a score on the session, not on a trace
            add("NUMERIC", None, "session_satisfaction", "API", later, 0.5, session=f"session-{i // 15}")
    # the round trip: feedback exported by `feedback-loop export --format langfuse`, each body checked by the
    # SDK's CreateScoreRequest, and listed back as Langfuse stores a created score (no Langfuse server runs
    # here: the listing is built with the SDK's response models from what the request set)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "domain"))
    from feedback_loop.interop.export import langfuse_scores

    events = _roundtrip_events([f"trace-{i:03d}" for i in range(40)])
    stored_v1, stored_v3, created = [], [], datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    from langfuse.api.core.serialization import convert_and_respect_annotation_metadata

    for body in langfuse_scores(events):
        # read as the SDK reads the wire format (camelCase), nothing left over, and written back the same
        request = api.CreateScoreRequest.model_validate(convert_and_respect_annotation_metadata(
            object_=body, annotation=api.CreateScoreRequest, direction="read"))
        assert not request.model_extra and json.loads(request.json()) == {**body, "timestamp": json.loads(
            request.json())["timestamp"]}, body
        kind, value = request.data_type.value, request.value
        at = request.timestamp or created
        common = dict(id=request.id, name=request.name, source="API", timestamp=at, created_at=created,
                      updated_at=created, environment="default", metadata=request.metadata, comment=request.comment)
        if kind == "BOOLEAN":
            stored_v1.append(api.Score_Boolean(data_type=kind, trace_id=request.trace_id, value=float(value),
                                               string_value=str(bool(value)), **common))
            stored_v3.append(api.ScoreV3_Boolean(data_type=kind, value=bool(value), project_id="fixtures",
                                                 subject=api.ScoreSubjectV3_Trace(kind="trace", id=request.trace_id),
                                                 **common))
        elif kind == "NUMERIC":
            stored_v1.append(api.Score_Numeric(data_type=kind, trace_id=request.trace_id, value=float(value), **common))
            stored_v3.append(api.ScoreV3_Numeric(data_type=kind, value=float(value), project_id="fixtures",
                                                 subject=api.ScoreSubjectV3_Trace(kind="trace", id=request.trace_id),
                                                 **common))
        else:
            v1_type = api.Score_Text if kind == "TEXT" else api.Score_Correction
            extra = {} if kind == "TEXT" else {"value": 0.0}
            stored_v1.append(v1_type(data_type=kind, trace_id=request.trace_id, string_value=value, **extra, **common))
            v3_type = api.ScoreV3_Text if kind == "TEXT" else api.ScoreV3_Correction
            stored_v3.append(v3_type(data_type=kind, value=value, project_id="fixtures",
                                     subject=api.ScoreSubjectV3_Trace(kind="trace", id=request.trace_id), **common))
    (out / "roundtrip_events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (out / "roundtrip_scores.json").write_text(json.dumps({"data": [json.loads(x.json()) for x in stored_v1]}, indent=1))
    (out / "roundtrip_scores_v3.json").write_text(json.dumps(json.loads(
        api.GetScoresV3Response(data=stored_v3, meta=api.GetScoresV3Meta(limit=1000, cursor=None)).json()), indent=1))
    (out / "scores.json").write_text(json.dumps({"data": [json.loads(s.json()) for s in v1],
                                                 "meta": {"page": 1, "limit": 1000, "totalItems": len(v1),
                                                          "totalPages": 1}}, indent=1))
    (out / "scores_v3.json").write_text(json.dumps(json.loads(
        api.GetScoresV3Response(data=v3, meta=api.GetScoresV3Meta(limit=1000, cursor=None)).json()), indent=1))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


ROUNDTRIP_KINDS = [("explicit_thumbs_up", True), ("explicit_thumbs_down", True), ("explicit_rating", 1),
                   ("explicit_rating", 4), ("explicit_text_comment", "Too long."),
                   ("implicit_edit", "A shorter answer."), ("implicit_usage", True), ("implicit_discard", True)]


def _roundtrip_events(request_ids: list[str]) -> list[dict[str, Any]]:
    """Feedback events of every type on these requests, as a client sends them (some with metadata)."""
    events = []
    for i, request_id in enumerate(request_ids):
        kind, value = ROUNDTRIP_KINDS[i % len(ROUNDTRIP_KINDS)]
        events.append({"request_id": request_id, "feedback_type": kind, "value": value, "event_id": f"fb-{i:03d}",
                       "timestamp": f"2026-05-12T10:{i:02d}:00Z", "user_id": f"user-{i % 7}",
                       "user_cohort": ["free", "pro"][i % 2],
                       **({"metadata": {"app": "support-bot", "screen": "chat"}} if i % 3 == 0 else {})})
    return events


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def phoenix_fixtures(out: Path, seed: int = 41) -> dict[str, Any]:
    """A Phoenix served in-process on loopback: 60 LLM spans logged with its client, annotated by an
    LLM judge (label, score, explanation; a score alone), a code check (label and score) and people
    (thumbs as label and score, 1-5 ratings as a score, categories as a label, explanations alone,
    notes), each with the app's user in metadata; exported as the REST API returns them
    (`GET /v1/projects/{project}/span_annotations`) and as the client's DataFrame
    (`get_span_annotations_dataframe(...).reset_index().to_json(orient="records")`). Then the round
    trip: feedback events on those spans exported by `feedback-loop export --format openinference`,
    posted to this Phoenix (`POST /v1/span_annotations`) and read back."""
    import os
    import sys
    import tempfile
    import time

    import httpx

    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    os.environ.update({"PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(_free_port()),
                       "PHOENIX_HOST": "127.0.0.1", "PHOENIX_WORKING_DIR": tempfile.mkdtemp(prefix="phoenix-")})
    import phoenix
    from phoenix.client import Client

    phoenix.launch_app(use_temp_dir=True)
    base = f"http://127.0.0.1:{port}"
    client = Client(base_url=base)
    rng = random.Random(seed)
    secrets_rng = random.Random(seed + 1)
    project = "feedback-loop-fixtures"
    start = "2026-05-11T09:{:02d}:{:02d}+00:00"
    truth: dict[str, Any] = {"phoenix": phoenix.__version__, "spans": [], "annotations": []}
    spans = []
    for i in range(TRACES):
        span_id, trace_id = f"{secrets_rng.getrandbits(64):016x}", f"{secrets_rng.getrandbits(128):032x}"
        question = QUESTIONS[i % len(QUESTIONS)] + f" (#{i})"
        answer = f"Answer {i}: " + rng.choice(["See the settings page.", "Within 30 days.", "It depends."])
        spans.append({"name": "chat", "context": {"trace_id": trace_id, "span_id": span_id}, "span_kind": "LLM",
                      "start_time": start.format(i // 60, i % 60), "end_time": start.format(i // 60, i % 60),
                      "status_code": "OK",
                      "attributes": {"openinference.span.kind": "LLM", "input.value": question, "output.value": answer,
                                     "llm.input_messages.0.message.role": "user",
                                     "llm.input_messages.0.message.content": question,
                                     "llm.output_messages.0.message.role": "assistant",
                                     "llm.output_messages.0.message.content": answer}})
        truth["spans"].append({"span_id": span_id, "trace_id": trace_id, "prompt": question, "output": answer})
    client.spans.log_spans(project_identifier=project, spans=spans)
    for _ in range(200):  # spans are inserted in the background (the project too)
        try:
            if len(client.spans.get_spans(project_identifier=project, limit=1000)) == TRACES:
                break
        except httpx.HTTPStatusError:
            pass
        time.sleep(0.1)

    def annotate(span_id: str, name: str, kind: str, label: str | None = None, score: float | None = None,
                 explanation: str | None = None, user: str | None = None, identifier: str | None = None) -> None:
        client.spans.add_span_annotation(span_id=span_id, annotation_name=name, annotator_kind=kind, label=label,
                                         score=score, explanation=explanation,
                                         metadata={"user_id": user} if user else None, identifier=identifier,
                                         sync=True)
        truth["annotations"].append({"span_id": span_id, "name": name, "kind": kind, "label": label, "score": score,
                                     "explanation": explanation, "user": user, "identifier": identifier})

    for i, span in enumerate(truth["spans"]):
        span_id = span["span_id"]
        correct = rng.random() < 0.7
        annotate(span_id, "correctness", "LLM", "correct" if correct else "incorrect", 1.0 if correct else 0.0,
                 "The answer addresses the question." if correct else "It does not answer the question.")
        annotate(span_id, "relevance", "LLM", score=round(rng.random(), 2))
        annotate(span_id, "has_answer", "CODE", "pass", 1.0)
        user, draw = f"user-{rng.randrange(10)}", rng.random()
        if draw < 0.35:
            up = rng.random() < 0.6
            annotate(span_id, "user_feedback", "HUMAN", "thumbs_up" if up else "thumbs_down", 1.0 if up else 0.0,
                     user=user, identifier=f"thumb-{i}")
        elif draw < 0.55:
            annotate(span_id, "rating", "HUMAN", score=float(rng.randint(1, 5)), user=user)
        elif draw < 0.65:
            annotate(span_id, "issue", "HUMAN", rng.choice(["hallucination", "formatting"]), user=user)
        elif draw < 0.75:
            annotate(span_id, "reason", "HUMAN", explanation="The answer ignores my plan.", user=user)
        if i % 8 == 2:
            client.spans.add_span_note(span_id=span_id, note="Checked by support.")
            truth["annotations"].append({"span_id": span_id, "name": "note", "kind": "HUMAN", "label": None,
                                         "score": None, "explanation": "Checked by support.", "user": None,
                                         "identifier": None})
    ids = [s["span_id"] for s in truth["spans"]]
    rest = httpx.get(f"{base}/v1/projects/{project}/span_annotations", params={"span_ids": ids, "limit": 1000})
    rest.raise_for_status()
    (out / "span_annotations.json").write_text(json.dumps(rest.json(), indent=1))
    frame = client.spans.get_span_annotations_dataframe(span_ids=ids, project_identifier=project, limit=1000)
    (out / "span_annotations_dataframe.json").write_text(frame.reset_index().to_json(orient="records"))
    # the spans themselves, where the request and the response are (`--spans`)
    listed = httpx.get(f"{base}/v1/projects/{project}/spans", params={"limit": 1000})
    listed.raise_for_status()
    (out / "spans.json").write_text(json.dumps(listed.json(), indent=1))
    spans_frame = client.spans.get_spans_dataframe(project_identifier=project, limit=1000)
    (out / "spans_dataframe.json").write_text(spans_frame.to_json(orient="records"))  # context.span_id is a column

    # the round trip: feedback on these spans, exported by feedback-loop, through this Phoenix and back
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "domain"))
    from feedback_loop.interop.export import span_annotations

    events = _roundtrip_events(ids[:40])
    kinds = ROUNDTRIP_KINDS
    posted = httpx.post(f"{base}/v1/span_annotations", params={"sync": "true"}, json=span_annotations(events))
    posted.raise_for_status()
    back = httpx.get(f"{base}/v1/projects/{project}/span_annotations",
                     params={"span_ids": ids[:40], "limit": 1000,
                             "include_annotation_names": sorted({k for k, _ in kinds})})
    back.raise_for_status()
    (out / "roundtrip_events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (out / "roundtrip_span_annotations.json").write_text(json.dumps(back.json(), indent=1))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", choices=["mlflow", "langfuse", "phoenix"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or FIXTURES / args.tool
    if args.tool == "mlflow":
        truth = mlflow_fixtures(out)
        print(f"{len(truth['traces'])} traces, MLflow {truth['mlflow']}")
    elif args.tool == "langfuse":
        truth = langfuse_fixtures(out)
        print(f"{len(truth['scores'])} scores, Langfuse SDK {truth['langfuse']}")
    else:
        truth = phoenix_fixtures(out)
        print(f"{len(truth['annotations'])} annotations on {len(truth['spans'])} spans, Phoenix {truth['phoenix']}")
        import os

        os._exit(0)  # the in-process server's threads would keep the interpreter alive


if __name__ == "__main__":
    main()
