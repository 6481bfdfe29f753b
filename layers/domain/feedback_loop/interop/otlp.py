"""OpenTelemetry in: OTLP/HTTP exports (protobuf or JSON, the official `opentelemetry-proto`
messages) read into what feedback-loop keeps, without storage (logic/otlp.py pairs and stores).

- **Spans** (`POST /v1/traces`): a span that can be a request (a root span, or one with `gen_ai.*`
  attributes of the OpenTelemetry GenAI conventions, or an OpenInference span kind) gives the eval
  record's fields besides its scores (`record_base`): request id (the `Mapping`'s choice: trace id,
  span id or an attribute), start time, prompt and output where captured, and metadata (model,
  operation, provider, service, session, trace and span ids, and every `feedback_loop.<field>`
  attribute as `<field>`: `feedback_loop.user_cohort` is the record's cohort).
- **Evaluation results** (`gen_ai.evaluation.result`): a span event of the evaluated span, or a log
  record (`POST /v1/logs`, event name or `event.name` attribute) carrying the evaluated span's
  trace and span ids: `gen_ai.evaluation.name`, `gen_ai.evaluation.score.value`,
  `gen_ai.evaluation.score.label`, `gen_ai.evaluation.explanation`. The one the `Mapping` names is
  the record's `overall` (rescaled from its range to [0, 1]); the others are kept as named scores.
- **OpenInference annotations** on a span (`annotations.<i>.annotation.{name, score, label,
  explanation, annotator_kind, identifier, metadata}`): kind HUMAN are people's judgements, read into
  feedback events the way `feedback-loop import` reads them (interop/mapping.py); LLM and CODE are
  evaluation results like the above.

OTLP/JSON differs from protobuf's JSON mapping in one point: trace and span ids are hex, not base64
(read as the specification says). Unknown fields are ignored, as receivers must.
"""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping as MappingType
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from feedback_loop.interop.export import EVENT_NAME
from feedback_loop.interop.mapping import read_scale
from feedback_loop.interop.tools import Annotation
from feedback_loop.interop.tools import openinference_messages as _openinference_messages
from feedback_loop.interop.tools import parsed as _parsed

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# What a compressed export may inflate to: the API's limit on a body as sent (MAX_BODY_BYTES), so that
# gzip changes nothing. Reading OTLP/JSON took about 10 MB of memory and 0.4 s per inflated MiB here
# (2026-12-07): 5 MB is ~50 MB and ~2 s in the 512 MB function, where the 64 MiB allowed before took
# 766 MB and 18 s, and a 327 KiB gzip body could ask for it.
MAX_INFLATED_BYTES = 5_000_000
# a prompt's or an output's bytes in a record: both and the rest fit a DynamoDB item (400 KB), where
# the span waits for its scores (logic/otlp.py)
MAX_TEXT_BYTES = 150_000
# OpenInference's annotations, and its evaluations, which its spec says to read the same way
_ANNOTATION = re.compile(r"^(annotations\.(\d+)\.annotation|evaluations\.(\d+)\.evaluation)\.(\w+)$")
REQUEST_KINDS = {"LLM", "AGENT", "CHAIN"}  # OpenInference span kinds that can be a request
PROMPT_KEYS = ("gen_ai.input.messages", "input.value", "gen_ai.prompt", "agentcore.invocation.user_prompt",
               "gen_ai.prompt.0.content", "llm.input_messages.0.message.content")
OUTPUT_KEYS = ("gen_ai.output.messages", "output.value", "gen_ai.completion", "agentcore.invocation.agent_response",
               "gen_ai.completion.0.content", "llm.output_messages.0.message.content")
METADATA_KEYS = {"model": ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
                 "operation": ("gen_ai.operation.name", "openinference.span.kind"),
                 "provider": ("gen_ai.provider.name", "gen_ai.system", "llm.provider"),
                 "service": ("service.name",), "session_id": ("session.id", "gen_ai.conversation.id"),
                 "agent": ("gen_ai.agent.name",)}
HEADER_OVERALL = "x-feedback-loop-overall"
HEADER_RANGE = "x-feedback-loop-overall-range"
HEADER_REQUEST_ID = "x-feedback-loop-request-id"
HEADER_HUMAN_RANGE = "x-feedback-loop-human-range"


class OtlpError(ValueError):
    """An export that cannot be read at all (the API's 400), naming what is wrong."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class OtlpTooLarge(OtlpError):
    """An export that inflates past MAX_INFLATED_BYTES (the API's 413: not worth resending as it is)."""


def _range(headers: MappingType[str, str], name: str) -> tuple[float, float] | None:
    """A `low,high` header, or None without it."""
    if name not in headers:
        return None
    try:
        return read_scale(headers[name])
    except ValueError as error:
        raise OtlpError(name, str(error)) from None


@dataclass(frozen=True)
class Mapping:
    """How an app's telemetry maps onto the eval log contract, from the exporter's headers
    (OTEL_EXPORTER_OTLP_HEADERS): which evaluation is `overall` (x-feedback-loop-overall, default
    `overall`), the range its scores come in (x-feedback-loop-overall-range `low,high`, default
    `0,1`), and which id the app's feedback refers to (x-feedback-loop-request-id: `trace`, the
    default, `span`, or the name of a span attribute such as `gen_ai.response.id`), and the scale of
    people's numeric annotations (x-feedback-loop-human-range `low,high`; without it, interop/mapping's
    rule: integers 1-5 are ratings, other numbers 0-1 scores)."""

    overall: str = "overall"
    low: float = 0.0
    high: float = 1.0
    request_id: str = "trace"
    human_range: tuple[float, float] | None = None  # the declared scale of people's numeric annotations

    @classmethod
    def from_headers(cls, headers: MappingType[str, str] | None) -> "Mapping":
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        overall = lower.get(HEADER_OVERALL, "overall").strip()
        request_id = lower.get(HEADER_REQUEST_ID, "trace").strip()
        if not overall or len(overall) > 200:
            raise OtlpError(HEADER_OVERALL, "must name an evaluation (1-200 characters)")
        if not request_id or len(request_id) > 200:
            raise OtlpError(HEADER_REQUEST_ID, "must be trace, span or a span attribute's name")
        low, high = _range(lower, HEADER_RANGE) or (0.0, 1.0)
        return cls(overall=overall, low=low, high=high, request_id=request_id,
                   human_range=_range(lower, HEADER_HUMAN_RANGE))

    def overall_score(self, raw: float) -> float:
        return (raw - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation result of one span."""

    trace_id: str
    span_id: str
    name: str
    score: float | None
    label: str | None
    explanation: str | None


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start: datetime
    end: datetime | None
    attributes: dict[str, Any]  # the resource's, then the span's own
    evaluations: list[Evaluation] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)  # people's (OpenInference HUMAN)


# --- decoding ------------------------------------------------------------------------------------

def _inflate(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise OtlpError("content-encoding", f"{encoding!r} is not supported: gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, MAX_INFLATED_BYTES + 1)
    except zlib.error as error:
        raise OtlpError("body", f"is not valid {encoding} data ({error})") from None
    if len(out) > MAX_INFLATED_BYTES:
        raise OtlpTooLarge("body", f"inflates to more than {MAX_INFLATED_BYTES:,} bytes: send smaller exports "
                                   "(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)")
    return out


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON's hex ids into protobuf JSON's base64, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id") \
                    and isinstance(value, str) and value and re.fullmatch(r"[0-9a-fA-F]+", value) and len(value) % 2 == 0:
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            elif key != "attributes":  # attribute values are never ids
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for value in node:
            _hex_ids_to_base64(value)


def decode(kind: str, body: bytes, content_type: str | None, encoding: str | None = None) -> Any:
    """The ExportTraceServiceRequest (`kind` traces) or ExportLogsServiceRequest (logs) in the body."""
    from google.protobuf.message import DecodeError

    media = (content_type or "").split(";")[0].strip().lower()
    raw = _inflate(body, encoding)
    if media == PROTOBUF:
        message = _service(kind)[0]()
        try:
            message.ParseFromString(raw)
        except DecodeError as error:
            raise OtlpError("body", f"is not an OTLP {kind} protobuf message ({error})") from None
        return message
    if media != JSON:
        raise OtlpError("content-type", f"{media!r} is not supported: {PROTOBUF} or {JSON}")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise OtlpError("body", f"is not valid JSON ({error})") from None
    return from_json(kind, document)


def from_json(kind: str, document: Any) -> Any:
    """The export of an OTLP/JSON document already parsed (its hex ids read in place)."""
    from google.protobuf import json_format

    if not isinstance(document, dict):
        raise OtlpError("body", f"must be an OTLP {kind} JSON object")
    _hex_ids_to_base64(document)
    try:
        return json_format.ParseDict(document, _service(kind)[0](), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise OtlpError("body", f"is not an OTLP {kind} JSON message ({error})") from None


def _service(kind: str) -> tuple[Any, Any, str]:
    """The export's request and response messages (`kind` traces or logs), and the response's
    count of what it rejected."""
    if kind == "traces":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as traces

        return traces.ExportTraceServiceRequest, traces.ExportTraceServiceResponse, "rejected_spans"
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs

    return logs.ExportLogsServiceRequest, logs.ExportLogsServiceResponse, "rejected_log_records"


def response(kind: str, media: str, rejected: int, message: str) -> bytes | str:
    """The export's answer (ExportTraceServiceResponse or ExportLogsServiceResponse) in the
    request's encoding, with partial_success when something was rejected or needs saying."""
    from google.protobuf import json_format

    _, answer_type, counted = _service(kind)
    answer = answer_type()
    if rejected or message:
        setattr(answer.partial_success, counted, rejected)
        answer.partial_success.error_message = message
    if media == PROTOBUF:
        return answer.SerializeToString()
    return json_format.MessageToJson(answer, indent=None)


# --- reading -------------------------------------------------------------------------------------

def value_of(any_value: Any) -> Any:
    """An AnyValue as Python: text, bool, int, float, list, dict (bytes as base64 text)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(any_value.bytes_value).decode()
    return getattr(any_value, kind)


def attributes_of(key_values: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in key_values}


def _moment(nanos: Any) -> datetime | None:
    """Nanoseconds since the epoch (a number, or numeric text as OTLP/JSON writes 64-bit integers)
    as a UTC time; None when absent, zero or past the calendar."""
    number = _number(nanos)
    if not number:
        return None
    try:
        return datetime.fromtimestamp(number / 1e9, timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def _id(raw: bytes, size: int) -> str | None:
    """A trace (16 bytes) or span (8 bytes) id as lower-case hex; None if absent, all zero or of
    another length."""
    return raw.hex() if len(raw) == size and any(raw) else None


def _number(value: Any) -> float | None:
    """A finite number from a bool, a number or numeric text; None otherwise."""
    if not isinstance(value, (bool, int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # text that is no number; an integer past float's range
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def evaluation_from(trace_id: str, span_id: str, attributes: dict[str, Any]) -> Evaluation | None:
    """A gen_ai.evaluation.result's attributes as an Evaluation (None without a name)."""
    name = attributes.get("gen_ai.evaluation.name")
    if not isinstance(name, str) or not name:
        return None
    return Evaluation(trace_id=trace_id, span_id=span_id, name=name,
                      score=_number(attributes.get("gen_ai.evaluation.score.value")),
                      label=_text(attributes.get("gen_ai.evaluation.score.label")),
                      explanation=_text(attributes.get("gen_ai.evaluation.explanation")))


def _place(index: tuple[str, int]) -> str:
    """An annotation's place among the span's: `3` for annotations.3 (as before evaluations were read), `e3`
    for evaluations.3."""
    return str(index[1]) if index[0] == "annotations" else f"e{index[1]}"


def _annotations(span: Span) -> None:
    """OpenInference annotations among the span's attributes, into its evaluations (LLM, CODE) or
    its people's annotations (HUMAN)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for key, value in span.attributes.items():
        match = _ANNOTATION.match(key)
        if match:
            family, index = ("annotations", match.group(2)) if match.group(2) else ("evaluations", match.group(3))
            found.setdefault((family, int(index)), {})[match.group(4)] = value
    for index in sorted(found):
        note = found[index]
        name = note.get("name")
        if not isinstance(name, str) or not name:
            continue
        score = _number(note.get("score"))
        label = _text(note.get("label"))
        explanation = _text(note.get("explanation"))
        if str(note.get("annotator_kind", "")).upper() != "HUMAN":
            span.evaluations.append(Evaluation(span.trace_id, span.span_id, name, score, label, explanation))
            continue
        raw = note.get("score")
        if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 2**53:
            score = raw  # an integer stays one: people's integers 1-5 are ratings (interop/mapping.py)
        metadata = note.get("metadata")
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                metadata = None
        metadata = metadata if isinstance(metadata, dict) else {}
        identifier = note.get("identifier")
        span.annotations.append(Annotation(
            tool="openinference", annotation_id=f"{span.trace_id}-{span.span_id}-{identifier or _place(index)}-{name}",
            trace_id=span.trace_id, span_id=span.span_id, name=name, human=True,
            value=score if score is not None else label, explanation=explanation, at=span.end or span.start,
            user_id=_text(metadata.get("user_id") or span.attributes.get("user.id")), metadata=metadata))


def spans(request: Any) -> tuple[list[Span], Counter[str]]:
    """The spans of an ExportTraceServiceRequest with their evaluations and people's annotations,
    and the spans that could not be read, by reason."""
    found: list[Span] = []
    rejected: Counter[str] = Counter()
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for raw in scope_spans.spans:
                trace_id, span_id = _id(raw.trace_id, 16), _id(raw.span_id, 8)
                if trace_id is None or span_id is None:
                    rejected["invalid_trace_or_span_id"] += 1
                    continue
                start = _moment(raw.start_time_unix_nano)
                if start is None:
                    rejected["no_start_time"] += 1
                    continue
                span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=_id(raw.parent_span_id, 8) or "",
                            name=raw.name, start=start, end=_moment(raw.end_time_unix_nano),
                            attributes={**resource, **attributes_of(raw.attributes)})
                for event in raw.events:
                    if event.name == EVENT_NAME:
                        evaluation = evaluation_from(trace_id, span_id, attributes_of(event.attributes))
                        if evaluation is not None:
                            span.evaluations.append(evaluation)
                _annotations(span)
                found.append(span)
    return found, rejected


def log_evaluations(request: Any) -> tuple[list[Evaluation], Counter[str]]:
    """The gen_ai.evaluation.result events among an ExportLogsServiceRequest's records (other log
    records are not ours and are passed over), and those that could not be used, by reason."""
    found: list[Evaluation] = []
    rejected: Counter[str] = Counter()
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = attributes_of(record.attributes)
                if EVENT_NAME not in (getattr(record, "event_name", ""), attributes.get("event.name")):
                    continue
                trace_id, span_id = _id(record.trace_id, 16), _id(record.span_id, 8)
                if trace_id is None or span_id is None:
                    rejected["evaluation_without_span_context"] += 1
                    continue
                evaluation = evaluation_from(trace_id, span_id, attributes)
                if evaluation is None:
                    rejected["evaluation_without_name"] += 1
                    continue
                found.append(evaluation)
    return found, rejected


# --- mapping -------------------------------------------------------------------------------------

def can_be_request(span: Span) -> bool:
    """Whether the span may be what a request id names: a root span, a GenAI or OpenInference
    request span, or one that was evaluated or annotated."""
    kind = str(span.attributes.get("openinference.span.kind", "")).upper()
    return (not span.parent_span_id or kind in REQUEST_KINDS or bool(span.evaluations) or bool(span.annotations)
            or any(key.startswith("gen_ai.") for key in span.attributes))


def request_id_of(span: Span, mapping: Mapping) -> str | None:
    if mapping.request_id == "trace":
        return span.trace_id
    if mapping.request_id == "span":
        return span.span_id
    value = span.attributes.get(mapping.request_id)
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "" else None


def first_attribute(attributes: dict[str, Any], keys: Iterable[str]) -> Any:
    return next((attributes[k] for k in keys if attributes.get(k) not in (None, "", [])), None)


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def record_base(span: Span, mapping: Mapping) -> dict[str, Any] | None:
    """The eval record of the span without its scores (module docstring), or None when the span
    has no request id under the mapping."""
    request_id = request_id_of(span, mapping)
    if request_id is None:
        return None
    a = span.attributes
    metadata: dict[str, Any] = {name: str(v) for name, keys in METADATA_KEYS.items()
                                if (v := first_attribute(a, keys)) is not None}
    metadata.update({key.removeprefix("feedback_loop."): v if isinstance(v, str) else json.dumps(v)
                     for key, v in a.items() if key.startswith("feedback_loop.") and v not in (None, "")})
    metadata.update({"span_name": span.name, "trace_id": span.trace_id, "span_id": span.span_id,
                     "source": "otlp"})
    record: dict[str, Any] = {"request_id": request_id, "timestamp": _timestamp(span.start)}
    for name, keys, messages in (("prompt", PROMPT_KEYS, "llm.input_messages"),
                                 ("output", OUTPUT_KEYS, "llm.output_messages")):
        # the messages themselves before OpenInference's input.value/output.value, which on an LLM
        # span is the whole request or response body (model, ids, usage besides the messages)
        value = a.get(keys[0]) if a.get(keys[0]) not in (None, "", []) else None
        value = value if value is not None else _openinference_messages(a, messages) or first_attribute(a, keys)
        if value is None:
            continue
        value = _parsed(value)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text.encode()) > MAX_TEXT_BYTES:  # kept as text, cut: the record must fit a table item
            value = text.encode()[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")
            metadata[f"{name}_truncated"] = "true"
        record[name] = value
    record["metadata"] = metadata
    return record


def scored_record(base: dict[str, Any], scores: dict[str, float], mapping: Mapping) -> dict[str, Any]:
    """The eval record: the span's fields with its scores, the mapped evaluation as `overall`
    (rescaled to [0, 1]) and every other as itself (one named `overall` besides is kept as
    `overall_reported`)."""
    others = {("overall_reported" if name == "overall" else name): v
              for name, v in scores.items() if name != mapping.overall}
    return {**base, "eval_scores": {"overall": mapping.overall_score(scores[mapping.overall]), **others},
            "metadata": {**base.get("metadata", {}), "overall_evaluation": mapping.overall}}


def hex_or_none(value: Any, size: int) -> str | None:
    """A hex id as CloudWatch's OTel records write it (or base64, as some exporters do), checked."""
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = bytes.fromhex(value) if re.fullmatch(r"[0-9a-fA-F]+", value) else base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error included
        return None
    return _id(raw, size)


def _flat_attributes(value: Any) -> dict[str, Any]:
    """Attributes as a flat object (CloudWatch's OTel records) or an OTLP/JSON key-value list."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        from google.protobuf import json_format
        from opentelemetry.proto.common.v1.common_pb2 import KeyValue

        out = {}
        for item in value:
            try:
                kv = json_format.ParseDict(item, KeyValue(), ignore_unknown_fields=True)
            except (json_format.ParseError, ValueError, TypeError):
                continue
            out[kv.key] = value_of(kv.value)
        return out
    return {}


def from_cloudwatch(document: dict[str, Any]) -> Span | Evaluation | None:
    """One OpenTelemetry record as CloudWatch Logs keeps it (AgentCore's evaluation results, and
    spans in `aws/spans` under Transaction Search): a JSON object with `traceId`, `spanId`,
    `attributes` (flat), `resource.attributes`, and for a span `name` and `startTimeUnixNano`. An
    evaluation result, a span, or None for anything else."""
    attributes = {**_flat_attributes((document.get("resource") or {}).get("attributes")),
                  **_flat_attributes(document.get("attributes"))}
    trace_id = hex_or_none(document.get("traceId") or document.get("trace_id"), 16)
    span_id = hex_or_none(document.get("spanId") or document.get("span_id"), 8)
    if trace_id is None or span_id is None:
        return None
    if "gen_ai.evaluation.name" in attributes:
        return evaluation_from(trace_id, span_id, attributes)
    start = _moment(document.get("startTimeUnixNano"))
    if start is None or not isinstance(document.get("name"), str):
        return None
    span = Span(trace_id=trace_id, span_id=span_id,
                parent_span_id=hex_or_none(document.get("parentSpanId"), 8) or "", name=document["name"],
                start=start, end=_moment(document.get("endTimeUnixNano")), attributes=attributes)
    _annotations(span)
    return span


def read_log_messages(messages: Iterable[str]) -> tuple[list[Span], list[Evaluation], Counter[str]]:
    """CloudWatch Logs messages (a subscription's log events): each an OpenTelemetry record as
    CloudWatch keeps it (`from_cloudwatch`) or a whole OTLP/JSON export; the spans, the evaluation
    results, and the messages passed over, by reason."""
    found_spans: list[Span] = []
    found_evaluations: list[Evaluation] = []
    skipped: Counter[str] = Counter()
    for message in messages:
        try:
            document = json.loads(message)
        except (ValueError, RecursionError):
            skipped["not_json"] += 1
            continue
        if not isinstance(document, dict):
            skipped["not_an_object"] += 1
            continue
        kind = "traces" if "resourceSpans" in document else "logs" if "resourceLogs" in document else None
        if kind is not None:  # a whole OTLP/JSON export
            try:
                export = from_json(kind, document)
            except OtlpError:
                skipped[f"invalid_otlp_{kind}"] += 1
                continue
            read, rejected = spans(export) if kind == "traces" else log_evaluations(export)
            (found_spans if kind == "traces" else found_evaluations).extend(read)
            skipped.update(rejected)
            continue
        read_one = from_cloudwatch(document)
        if isinstance(read_one, Span):
            found_spans.append(read_one)
        elif isinstance(read_one, Evaluation):
            found_evaluations.append(read_one)
        else:
            skipped["not_a_span_or_evaluation"] += 1
    return found_spans, found_evaluations, skipped
