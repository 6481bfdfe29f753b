"""The importers' test fixtures, made by each tool's own library (not written by hand): traces and
their judgements logged through the tool's API, then exported in each form a user gets them in.

    python -m venv /tmp/interop && /tmp/interop/bin/pip install "mlflow==3.18.0" "langfuse==5.2.0"
    MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false /tmp/interop/bin/python scripts/interop_fixtures.py mlflow
    /tmp/interop/bin/python scripts/interop_fixtures.py langfuse

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
    (out / "scores.json").write_text(json.dumps({"data": [json.loads(s.json()) for s in v1],
                                                 "meta": {"page": 1, "limit": 1000, "totalItems": len(v1),
                                                          "totalPages": 1}}, indent=1))
    (out / "scores_v3.json").write_text(json.dumps(json.loads(
        api.GetScoresV3Response(data=v3, meta=api.GetScoresV3Meta(limit=1000, cursor=None)).json()), indent=1))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", choices=["mlflow", "langfuse"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or FIXTURES / args.tool
    if args.tool == "mlflow":
        truth = mlflow_fixtures(out)
        print(f"{len(truth['traces'])} traces, MLflow {truth['mlflow']}")
    else:
        truth = langfuse_fixtures(out)
        print(f"{len(truth['scores'])} scores, Langfuse SDK {truth['langfuse']}")


if __name__ == "__main__":
    main()
