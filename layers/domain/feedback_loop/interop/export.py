"""Human feedback out, where a team's traces already are.

- **OpenTelemetry**: each event as a `gen_ai.evaluation.result` event (a log record with that
  event name, OpenTelemetry GenAI semantic conventions) in an OTLP/JSON `ExportLogsServiceRequest`
  built with the official `opentelemetry-proto` messages: `gen_ai.evaluation.name` (the feedback
  type), `gen_ai.evaluation.score.value` (its human score, 0-1, where it has one),
  `gen_ai.evaluation.score.label`, `gen_ai.evaluation.explanation` (a comment's or an edit's text),
  `gen_ai.response.id` (the request id), `user.id`, and `feedback_loop.event_id`,
  `feedback_loop.user_cohort`. POST it to a collector's `/v1/logs` (OTLP/HTTP JSON).
- **OpenInference** (Phoenix): span annotations with annotator kind HUMAN, the body of Phoenix's
  `POST /v1/span_annotations` (`{"data": [...]}`): `span_id` (the request id: use the span id as the
  request id in the app), `name`, `annotator_kind`, `result` (`score`, `label`, `explanation`),
  `identifier` (the event id: Phoenix keeps one annotation per identifier), `metadata`.

- **Langfuse**: scores, a JSON array of the body of `POST /api/public/scores` (its
  CreateScoreRequest): `id` (the event id: Langfuse keeps one score per id, so sending again updates
  it), `traceId` (the request id), `name` (the feedback type), `dataType` and `value` (BOOLEAN 1 or 0
  for thumbs, usage and discard; NUMERIC the human score for a rating; TEXT a comment's text;
  CORRECTION an edit's text), `source` API, `timestamp`, `metadata` (user, cohort, event id, the
  event's own metadata: Langfuse has no field for the app's user).

The score of an event is the human score the analysis gives it (docs/CONTRACTS.md): a thumb 1 or
0, a rating r (r - 1) / 4, usage 1, discard 0; a comment and an edit carry text, not a score.
- **MLflow**: assessments (`Assessment.to_dictionary()`'s shape), JSON Lines, one HUMAN feedback per
  event, for `mlflow.log_assessment(trace_id, Assessment.from_dictionary(line))` (mlflow_assessments).

`feedback-loop import phoenix`, `import langfuse` and `import mlflow` read them back into the same events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from feedback_loop.models.feedback import FeedbackType

EVENT_NAME = "gen_ai.evaluation.result"
_LABELS = {FeedbackType.THUMBS_UP: "thumbs_up", FeedbackType.THUMBS_DOWN: "thumbs_down",
           FeedbackType.USAGE: "used", FeedbackType.DISCARD: "discarded", FeedbackType.EDIT: "edited",
           FeedbackType.COMMENT: "comment"}


def score(event: dict[str, Any]) -> tuple[float | None, str, str | None]:
    """(score, label, explanation) of a feedback event."""
    kind, value = event["feedback_type"], event["value"]
    if kind == FeedbackType.RATING:
        return (value - 1) / 4, str(value), None
    text = value if kind in (FeedbackType.COMMENT, FeedbackType.EDIT) else None
    number = {FeedbackType.THUMBS_UP: 1.0, FeedbackType.THUMBS_DOWN: 0.0, FeedbackType.USAGE: 1.0,
              FeedbackType.DISCARD: 0.0}.get(kind)
    return number, _LABELS[FeedbackType(kind)], text


def _nanos(event: dict[str, Any]) -> int:
    moment = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def otlp_logs(events: Iterable[dict[str, Any]], service_name: str = "feedback-loop") -> Any:
    """An ExportLogsServiceRequest (protobuf) of the events as gen_ai.evaluation.result events."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def attribute(key: str, value: Any) -> KeyValue:
        wrapped = AnyValue(double_value=value) if isinstance(value, float) else AnyValue(string_value=str(value))
        return KeyValue(key=key, value=wrapped)

    records = []
    for event in events:
        number, label, text = score(event)
        attributes = [attribute("gen_ai.evaluation.name", event["feedback_type"]),
                      attribute("gen_ai.evaluation.score.label", label),
                      attribute("gen_ai.response.id", event["request_id"])]
        if number is not None:
            attributes.append(attribute("gen_ai.evaluation.score.value", number))
        if text is not None:
            attributes.append(attribute("gen_ai.evaluation.explanation", text))
        for key, field in (("user.id", "user_id"), ("feedback_loop.event_id", "event_id"),
                           ("feedback_loop.user_cohort", "user_cohort")):
            if event.get(field):
                attributes.append(attribute(key, event[field]))
        records.append(LogRecord(time_unix_nano=_nanos(event), event_name=EVENT_NAME, attributes=attributes))
    resource = Resource(attributes=[attribute("service.name", service_name)])
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(resource=resource, scope_logs=[
        ScopeLogs(scope=InstrumentationScope(name="feedback-loop"), log_records=records)])])


def otlp_json(events: Iterable[dict[str, Any]], service_name: str = "feedback-loop") -> str:
    """The OTLP/JSON encoding (lowerCamelCase fields, as collectors take it)."""
    from google.protobuf.json_format import MessageToJson

    return MessageToJson(otlp_logs(events, service_name), indent=None)


def span_annotations(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Phoenix's POST /v1/span_annotations body: the events as HUMAN span annotations."""
    data = []
    for event in events:
        number, label, text = score(event)
        result = {"label": label, **({"score": number} if number is not None else {}),
                  **({"explanation": text} if text is not None else {})}
        data.append({"span_id": event["request_id"], "name": event["feedback_type"], "annotator_kind": "HUMAN",
                     "result": result, "identifier": event.get("event_id"), "created_at": event["timestamp"],
                     # what Phoenix does not keep of the fields above (it sets created_at and user_id itself)
                     "metadata": _own_metadata(event),
                     **({"user_id": event["user_id"]} if event.get("user_id") else {})})
    return {"data": data}


def _own_metadata(event: dict[str, Any]) -> dict[str, Any]:
    """What a tool keeps of an event only in its annotation's metadata, for the importer to give the
    event back exactly as it was sent."""
    return {k: event[k] for k in ("user_id", "user_cohort", "event_id", "timestamp", "metadata") if event.get(k)}


def langfuse_scores(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Langfuse's POST /api/public/scores bodies (module docstring), one per event."""
    kinds = {FeedbackType.COMMENT: "TEXT", FeedbackType.EDIT: "CORRECTION", FeedbackType.RATING: "NUMERIC"}
    scores = []
    for event in events:
        number, _, text = score(event)
        kind = kinds.get(FeedbackType(event["feedback_type"]), "BOOLEAN")
        scores.append({**({"id": event["event_id"]} if event.get("event_id") else {}),
                       "traceId": event["request_id"], "name": event["feedback_type"],
                       "dataType": kind, "value": text if kind in ("TEXT", "CORRECTION") else number,
                       "source": "API", "timestamp": event["timestamp"], "metadata": _own_metadata(event)})
    return scores


def mlflow_assessments(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """MLflow assessments (what `Assessment.to_dictionary()` writes and `Assessment.from_dictionary()`
    reads, to log with `mlflow.log_assessment`), one HUMAN feedback per event: `assessment_name` the
    feedback type, `trace_id` the request id (log MLflow's trace id as the request id in the app),
    `source` (HUMAN, the user), `feedback.value` (a thumb, usage or discard True; a rating its human
    score (r - 1) / 4; a comment's or an edit's text, also as the `rationale`), the event's time as
    `create_time`, and `metadata` (text values, as MLflow keeps them: user, cohort, event id, time, the
    event's own metadata as JSON)."""
    import json

    found = []
    for event in events:
        number, _, text = score(event)
        kind = FeedbackType(event["feedback_type"])
        value: Any = text if text is not None else number if kind == FeedbackType.RATING else True
        own = _own_metadata(event)
        metadata = {k: (json.dumps(v, sort_keys=True) if k == "metadata" else str(v)) for k, v in own.items()}
        found.append({"assessment_name": event["feedback_type"], "trace_id": event["request_id"],
                      "source": {"source_type": "HUMAN", "source_id": event.get("user_id") or "feedback-loop"},
                      "create_time": event["timestamp"], "last_update_time": event["timestamp"],
                      "feedback": {"value": value}, **({"rationale": text} if text is not None else {}),
                      "metadata": metadata})
    return found
