"""Each tool's exported annotations read into one shape (`Annotation`), as each tool documents them.

- **Langfuse** scores (the forms tests/fixtures/interop/langfuse holds, made with the Langfuse SDK
  5.2's own API models), in the documented shape (`GET /api/public/scores`, or its export): `id`,
  `traceId`, `observationId`, `sessionId`, `name`, `value` (a number; 1/0 for BOOLEAN; a category's
  number for CATEGORICAL; 0 for CORRECTION), `stringValue` (CATEGORICAL's label, "True"/"False" for
  BOOLEAN, TEXT's text, CORRECTION's corrected answer), `dataType` (NUMERIC, CATEGORICAL, BOOLEAN,
  TEXT, CORRECTION), `source` (ANNOTATION and API: people, in the UI or through the SDK, where user
  feedback goes; EVAL: an LLM judge), `comment`, `metadata` (`user_id` names the user where
  `authorUserId` does not), `timestamp`, `authorUserId`; or in the shape the current listing API
  returns (`GET /api/public/v3/scores`): `subject` ({kind: trace, id}, {kind: observation, id,
  traceId} or {kind: session, id}: no trace) in place of the ids, `value` typed by `dataType` (a bool,
  a number, or the label, text or corrected answer).
- **MLflow** (MLflow 3; the forms tests/fixtures/interop/mlflow holds, made by MLflow 3.18) assessments
  (`Assessment.to_dictionary()`): `assessment_id`, `trace_id`, `span_id`, `assessment_name` (or
  `name`), `source` (`source_type` HUMAN, LLM_JUDGE or CODE, `source_id`), `feedback` (`value`: a
  bool, number or text) or `expectation` (ground truth, not feedback: skipped), `rationale`,
  `metadata`, `create_time` (ISO 8601, or milliseconds), `valid` (false: overridden, by
  `override_feedback`: skipped), `overrides` (the assessment a person's correction replaces); MLflow
  keeps every number as a double, so a person's whole number 1-5 is read as that integer rating (a
  0/1 number logged as a thumb would read 1.0 as a rating of 1: log thumbs as bools); and the
  traces that hold them, `Trace.to_dict()` (`info.assessments`, the inputs and outputs in
  `info.trace_metadata` `mlflow.traceInputs` / `mlflow.traceOutputs`) or a row of
  `mlflow.search_traces()` written with `DataFrame.to_json(orient="records")` (`assessments`,
  `request`, `response`): each assessment with its trace's prompt and response.
- **Phoenix** span annotations (REST `GET /v1/projects/{project}/span_annotations`, the
  OpenInference annotation): `id`, `span_id`, `name`, `annotator_kind` (HUMAN, LLM, CODE),
  `result` (`label`, `score`, `explanation`), `metadata`, `identifier`, `created_at`, `user_id`.

A file is a JSON array, an API page (`{"data": [...]}`) or JSON Lines of such objects. An object
that is not one (no id of what it annotates, no name) is counted in `skipped` with its reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from feedback_loop.models.feedback import FeedbackType

TOOLS = ("langfuse", "mlflow", "phoenix")
OWN_TYPES = {str(kind) for kind in FeedbackType}  # annotations named so: feedback-loop's own export, read back
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
    prompt: Any = None  # the trace's request and response, where the export holds them
    output: Any = None
    kind: str | None = None  # `text` (free text), `correction` (a corrected answer); None: a judgement
    number: float | None = None  # a judge's number beside its label (Langfuse CATEGORICAL, Phoenix label + score)
    event_id: str | None = None  # the feedback event's own id (feedback-loop's export, read back): kept as it is


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


def _own_export(name: str, metadata: dict[str, Any] | None) -> tuple[str | None, datetime | None]:
    """For feedback-loop's own export read back (`feedback-loop export`: an annotation named after a
    feedback type, whose metadata keeps the event's id, time and user where the tool has no field for
    them or replaces its own): the event's id and time; else (None, None)."""
    own = _text((metadata or {}).get("event_id")) if name in OWN_TYPES else None
    return own, _moment((metadata or {}).get("timestamp")) if own else None


def _langfuse(o: dict[str, Any]) -> Annotation:
    """A score in the documented shape (`traceId`, `observationId`, `value` a number, `stringValue`
    the label or text) or in the v3 API's (`subject` {kind, id, traceId}; `value` typed by
    `dataType`: a bool, a number, or the label or text)."""
    kind, subject = o.get("dataType"), o.get("subject")
    v3 = isinstance(subject, dict)
    if v3:
        trace = subject.get("id") if subject.get("kind") == "trace" else subject.get("traceId")
        span = subject.get("id") if subject.get("kind") == "observation" else None
    else:
        trace, span = o.get("traceId"), o.get("observationId")
    raw = o.get("value")
    # the label or text: v3's value; the documented shape's stringValue (or its value, in a create body)
    text = raw if v3 or (isinstance(raw, str) and o.get("stringValue") is None) else o.get("stringValue")
    value: bool | float | str | None
    number = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    if kind == "BOOLEAN":
        value = bool(raw)
    elif kind in ("CATEGORICAL", "TEXT", "CORRECTION"):
        value = _text(text)
    else:
        value = number
    metadata = o.get("metadata") if isinstance(o.get("metadata"), dict) else None
    own, at = _own_export(o.get("name") or "", metadata)
    return Annotation("langfuse", o.get("id"), trace, span, o.get("name") or "",
                      o.get("source") in ("ANNOTATION", "API"), value, _text(o.get("comment")),
                      at or _moment(o.get("timestamp") or o.get("createdAt")),
                      o.get("authorUserId") or _text((metadata or {}).get("user_id")), metadata,
                      kind={"TEXT": "text", "CORRECTION": "correction"}.get(kind),
                      number=number if kind == "CATEGORICAL" else None, event_id=own)


def parsed(value: Any) -> Any:
    """JSON text (a trace's inputs as MLflow keeps them; messages as the OpenTelemetry conventions carry
    them) as JSON; anything else as it is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _said(value: Any, role: str) -> Any:
    """The text of a request (role `user`) or a response (`assistant`) where its shape says where it
    is: a string; a chat completion's first choice; the last message of that role in `messages` or a
    list of messages; an object with one text field. Otherwise the JSON value as it is."""
    value = parsed(value)
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, dict):
        choices = value.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or {}
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return message["content"]
        if isinstance(value.get("messages"), list):
            return _said(value["messages"], role)
        texts = [v for v in value.values() if isinstance(v, str)]
        if len(value) == 1 and texts:
            return texts[0]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        said = [m["content"] for m in value if m.get("role") == role and isinstance(m.get("content"), str)]
        if said:
            return said[-1]
    return value


_MESSAGE = re.compile(r"^(llm\.(?:input|output)_messages)\.(\d+)\.message\.(role|content|contents\.(\d+)\."
                      r"message_content\.text)$")


def openinference_messages(attributes: dict[str, Any], prefix: str) -> list[dict[str, str]] | None:
    """OpenInference's flattened messages (`llm.input_messages.<i>.message.role`, `.content`, or the
    text parts `.contents.<j>.message_content.text`) as a list of {role, content}, or None."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        match = _MESSAGE.match(key)
        if not match or match.group(1) != prefix or not isinstance(value, str):
            continue
        message = found.setdefault(int(match.group(2)), {})
        if match.group(3) in ("role", "content"):
            message[match.group(3)] = value
        else:
            message.setdefault("parts", {})[int(match.group(4))] = value
    messages = []
    for index in sorted(found):
        message = found[index]
        content = message.get("content") or "\n".join(message.get("parts", {})[j] for j in sorted(message.get("parts", {})))
        messages.append({"role": message.get("role", ""), "content": content})
    return messages or None


def span_texts(path: str | Path) -> dict[str, tuple[Any, Any]]:
    """The request and the response of each span of a Phoenix spans export, by span id and by trace
    id: the REST API's page (`GET /v1/projects/{project}/spans`: `context`, flattened `attributes`)
    or the client's `get_spans_dataframe()` written with `to_json(orient="records")`
    (`context.span_id`, `attributes.input.value`, `attributes.llm.input_messages` ...). The texts are
    the last user message and the answer where the LLM messages are there, else `input.value` and
    `output.value` (_said)."""
    found: dict[str, tuple[Any, Any]] = {}
    for o in _objects(Path(path)):
        if not isinstance(o, dict):
            continue
        context = o.get("context") if isinstance(o.get("context"), dict) else {}
        ids = [context.get("span_id") or o.get("context.span_id"), context.get("trace_id") or o.get("context.trace_id")]
        attributes = o.get("attributes") if isinstance(o.get("attributes"), dict) else \
            {key.removeprefix("attributes."): value for key, value in o.items() if key.startswith("attributes.")}
        texts = []
        for prefix, key, role in (("llm.input_messages", "input.value", "user"),
                                  ("llm.output_messages", "output.value", "assistant")):
            listed = attributes.get(prefix)  # the DataFrame's list of {message.role, message.content}
            messages = ([{"role": m.get("message.role"), "content": m.get("message.content")} for m in listed
                         if isinstance(m, dict)] if isinstance(listed, list) else openinference_messages(attributes, prefix))
            said = _said(messages, role) if messages else None
            texts.append(said if isinstance(said, str) else _said(attributes.get(key), role))
        if any(t not in (None, "") for t in texts):
            for identifier in ids:
                if isinstance(identifier, str) and identifier:
                    found.setdefault(identifier, (texts[0], texts[1]))
    return found


def with_texts(annotations: list[Annotation], texts: dict[str, tuple[Any, Any]]) -> list[Annotation]:
    """The annotations with their span's (else their trace's) request and response (span_texts), where
    they have none of their own."""
    import dataclasses

    found = []
    for a in annotations:
        own = texts.get(a.span_id or "") or texts.get(a.trace_id or "")
        found.append(dataclasses.replace(a, prompt=own[0], output=own[1]) if own and a.prompt is None and
                     a.output is None else a)
    return found


def _mlflow_assessment(o: dict[str, Any], prompt: Any = None, output: Any = None) -> Annotation | str:
    if "feedback" not in o:  # an expectation (ground truth) or something else: not a judgement
        return "not_a_judgement"
    if o.get("valid") is False:  # replaced by a correction (override_feedback), which is read instead
        return "overridden"
    source = o.get("source") or {}
    raw = (o.get("feedback") or {}).get("value")
    value = raw if isinstance(raw, (bool, int, float, str)) else None
    human = source.get("source_type") == "HUMAN"
    name = o.get("assessment_name") or o.get("name") or ""
    metadata = o.get("metadata") if isinstance(o.get("metadata"), dict) else None
    own, at = _own_export(name, metadata) if human else (None, None)
    if human and not own and isinstance(value, float) and value.is_integer() and 1 <= value <= 5:
        value = int(value)  # MLflow keeps every number as a double: a person's 1-5 rating of 1 reads 1.0
    user = _text((metadata or {}).get("user_id")) if own else source.get("source_id") if human else None
    return Annotation("mlflow", o.get("assessment_id"), o.get("trace_id"), o.get("span_id"), name, human,
                      value, _text(o.get("rationale")),
                      at or _moment(o.get("create_time")),
                      user, metadata, prompt, output, event_id=own)


def _mlflow(o: dict[str, Any]) -> list[Annotation | str]:
    """An assessment, a `Trace.to_dict()` or a `search_traces()` row (module docstring)."""
    info = o.get("info")
    if isinstance(info, dict) and isinstance(info.get("assessments"), list):  # Trace.to_dict()
        metadata = info.get("trace_metadata") or {}
        prompt = _said(metadata.get("mlflow.traceInputs", info.get("request_preview")), "user")
        output = _said(metadata.get("mlflow.traceOutputs", info.get("response_preview")), "assistant")
        assessments = info["assessments"]
    elif isinstance(o.get("assessments"), list) and ("request" in o or "trace" in o):  # a search_traces() row
        prompt, output = _said(o.get("request"), "user"), _said(o.get("response"), "assistant")
        assessments = o["assessments"]
    else:
        return [_mlflow_assessment(o)]
    return [_mlflow_assessment(a, prompt, output) if isinstance(a, dict) else "not_an_object" for a in assessments]


def _phoenix(o: dict[str, Any]) -> Annotation:
    """A span annotation as the REST API returns it, or a row of the client's annotations DataFrame
    written with `reset_index().to_json(orient="records")` (`annotation_name`, `result.label`, ...)."""
    result = o.get("result") if isinstance(o.get("result"), dict) else \
        {key: o.get(f"result.{key}") for key in ("label", "score", "explanation")}
    score, label = result.get("score"), _text(result.get("label"))
    name = o.get("name") or o.get("annotation_name") or ""
    metadata = o.get("metadata") if isinstance(o.get("metadata"), dict) else {}
    human = o.get("annotator_kind") == "HUMAN"
    numeric = isinstance(score, (int, float)) and not isinstance(score, bool)
    if human and numeric and label is None and name not in OWN_TYPES and float(score).is_integer() and 1 <= score <= 5:
        score = int(score)  # Phoenix keeps a score as a double: a person's 1-5 rating of 1 reads 1.0
    # a person's label that says a thumb, else the score where there is one (the label kept in metadata),
    # else the label; a judge's label with its number beside it (the number is read first)
    says_thumb = label is not None and label.strip().lower() in GOOD_LABELS | BAD_LABELS
    value = label if (human and says_thumb) or not numeric or not human else score
    own, at = _own_export(name, metadata)  # Phoenix replaces created_at and user_id with its own
    return Annotation("phoenix", o.get("id") or _text(o.get("identifier")), o.get("trace_id"), o.get("span_id"),
                      name, human, value, _text(result.get("explanation")),
                      at or _moment(o.get("created_at") or o.get("updated_at")),
                      o.get("user_id") or _text(metadata.get("user_id")),
                      {**metadata, **({"label": label} if label else {})} or None,
                      number=float(score) if numeric and not human else None, event_id=own)


READERS: dict[str, Callable[[dict[str, Any]], list[Annotation | str]]] = {
    "langfuse": lambda o: [_langfuse(o)], "mlflow": _mlflow, "phoenix": lambda o: [_phoenix(o)]}


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
        for annotation in reader(o):
            if isinstance(annotation, str):
                skipped[annotation] += 1
            elif not (annotation.trace_id or annotation.span_id):
                skipped["no_trace_or_span"] += 1
            elif not annotation.name:
                skipped["no_name"] += 1
            else:
                found.append(annotation)
    return found
