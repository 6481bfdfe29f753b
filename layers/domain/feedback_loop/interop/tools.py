"""Each tool's exported annotations read into one shape (`Annotation`), as each tool documents them.

- **Langfuse** scores (public API `GET /api/public/scores`, or its export): `id`, `traceId`,
  `observationId`, `name`, `value` (a number; 1/0 for BOOLEAN), `stringValue` (CATEGORICAL, and
  "True"/"False" for BOOLEAN), `dataType` (NUMERIC, CATEGORICAL, BOOLEAN), `source` (ANNOTATION and
  API: people, in the UI or through the SDK, where user feedback goes; EVAL: an LLM judge),
  `comment`, `metadata`, `timestamp`, `authorUserId`.
- **MLflow** assessments (`Assessment.to_dictionary()`, MLflow 3): `assessment_id`, `trace_id`,
  `span_id`, `assessment_name` (or `name`), `source` (`source_type` HUMAN, LLM_JUDGE or CODE,
  `source_id`), `feedback` (`value`: a bool, number or text) or `expectation` (ground truth, not
  feedback: skipped), `rationale`, `metadata`, `create_time` (ISO 8601, or milliseconds).
- **Phoenix** span annotations (REST `GET /v1/projects/{project}/span_annotations`, the
  OpenInference annotation): `id`, `span_id`, `name`, `annotator_kind` (HUMAN, LLM, CODE),
  `result` (`label`, `score`, `explanation`), `metadata`, `identifier`, `created_at`, `user_id`.

A file is a JSON array, an API page (`{"data": [...]}`) or JSON Lines of such objects. An object
that is not one (no id of what it annotates, no name) is counted in `skipped` with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TOOLS = ("langfuse", "mlflow", "phoenix")
# labels that say a thumb: read as one whatever score comes with them
GOOD_LABELS = {"good", "correct", "yes", "pass", "passed", "true", "positive", "thumbs_up", "thumbs up", "up",
               "helpful", "accept", "accepted", "like"}
BAD_LABELS = {"bad", "incorrect", "no", "fail", "failed", "false", "negative", "thumbs_down", "thumbs down", "down",
              "unhelpful", "reject", "rejected", "dislike"}


@dataclass(frozen=True)
class Annotation:
    """One tool's judgement of one trace or span."""

    tool: str
    annotation_id: str | None
    trace_id: str | None
    span_id: str | None
    name: str
    human: bool
    value: bool | float | str | None  # a bool, a number or a label, as the tool gave it
    explanation: str | None
    at: datetime | None
    user_id: str | None
    metadata: dict[str, Any] | None


def _moment(value: Any) -> datetime | None:
    """ISO 8601 text, or milliseconds since the epoch (MLflow's create_time)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, timezone.utc)
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _langfuse(o: dict[str, Any]) -> Annotation:
    kind = o.get("dataType")
    value: bool | float | str | None
    if kind == "BOOLEAN":
        value = bool(o.get("value"))
    elif kind == "CATEGORICAL":
        value = _text(o.get("stringValue"))
    else:
        value = o.get("value") if isinstance(o.get("value"), (int, float)) else None
    return Annotation("langfuse", o.get("id"), o.get("traceId"), o.get("observationId"), o.get("name") or "",
                      o.get("source") in ("ANNOTATION", "API"), value, _text(o.get("comment")),
                      _moment(o.get("timestamp") or o.get("createdAt")), o.get("authorUserId"), o.get("metadata"))


def _mlflow(o: dict[str, Any]) -> Annotation | None:
    if "feedback" not in o:  # an expectation (ground truth) or something else: not a judgement
        return None
    source = o.get("source") or {}
    raw = (o.get("feedback") or {}).get("value")
    value = raw if isinstance(raw, (bool, int, float, str)) else None
    return Annotation("mlflow", o.get("assessment_id"), o.get("trace_id"), o.get("span_id"),
                      o.get("assessment_name") or o.get("name") or "", source.get("source_type") == "HUMAN",
                      value, _text(o.get("rationale")), _moment(o.get("create_time")),
                      source.get("source_id") if source.get("source_type") == "HUMAN" else None, o.get("metadata"))


def _phoenix(o: dict[str, Any]) -> Annotation:
    result = o.get("result") or {}
    score, label = result.get("score"), _text(result.get("label"))
    # a label that says a thumb, else the score where there is one (the label kept in metadata), else the label
    numeric = isinstance(score, (int, float)) and not isinstance(score, bool)
    says_thumb = label is not None and label.strip().lower() in GOOD_LABELS | BAD_LABELS
    value = label if says_thumb or not numeric else score
    return Annotation("phoenix", o.get("id") or o.get("identifier"), o.get("trace_id"), o.get("span_id"),
                      o.get("name") or "", o.get("annotator_kind") == "HUMAN", value,
                      _text(result.get("explanation")), _moment(o.get("created_at") or o.get("updated_at")),
                      o.get("user_id"), {**(o.get("metadata") or {}), **({"label": label} if label else {})} or None)


READERS: dict[str, Callable[[dict[str, Any]], Annotation | None]] = {
    "langfuse": _langfuse, "mlflow": _mlflow, "phoenix": _phoenix}


def _objects(path: Path) -> Iterator[Any]:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSON Lines
        for line in text.splitlines():
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield None
        return
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # an API page
        yield from data["data"]
    else:
        yield from data if isinstance(data, list) else [data]


def read(tool: str, path: str | Path, skipped: Counter[str] | None = None) -> list[Annotation]:
    """Every annotation of a tool's export file; what is not one is counted in `skipped`."""
    skipped = skipped if skipped is not None else Counter()
    reader = READERS[tool]
    found = []
    for o in _objects(Path(path)):
        if not isinstance(o, dict):
            skipped["not_an_object"] += 1
            continue
        annotation = reader(o)
        if annotation is None:
            skipped["not_a_judgement"] += 1
        elif not (annotation.trace_id or annotation.span_id):
            skipped["no_trace_or_span"] += 1
        elif not annotation.name:
            skipped["no_name"] += 1
        else:
            found.append(annotation)
    return found
