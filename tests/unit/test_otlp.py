"""OpenTelemetry in: reading OTLP exports (interop/otlp.py) and pairing spans with their evaluation
results whatever their order (logic/otlp.py), against a table in memory and a stream that can
refuse."""

from __future__ import annotations

import gzip
import json
import zlib
from datetime import datetime, timezone
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span  # noqa: E402

from feedback_loop.interop import otlp  # noqa: E402
from feedback_loop.logic import evals  # noqa: E402
from feedback_loop.logic import otlp as telemetry  # noqa: E402
from feedback_loop.logic.ingest import IngestPolicy  # noqa: E402

from .test_evals import Client  # noqa: E402
from .test_ingest import FlakyTable  # noqa: E402

TRACE, SPAN = bytes.fromhex("5b8efff798038103d269b633813fc60c"), bytes.fromhex("eee19b7ec3c1b174")
START = 1_779_000_000_000_000_000


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        wrapped = AnyValue(bool_value=value)
    elif isinstance(value, int):
        wrapped = AnyValue(int_value=value)
    elif isinstance(value, float):
        wrapped = AnyValue(double_value=value)
    else:
        wrapped = AnyValue(string_value=value)
    return KeyValue(key=key, value=wrapped)


def evaluation(name: str, score: float) -> list[KeyValue]:
    return [kv("gen_ai.evaluation.name", name), kv("gen_ai.evaluation.score.value", score)]


def traces(*spans: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    for key, value in (resource or {}).items():
        request.resource_spans[0].resource.attributes.append(kv(key, value))
    return request


def chat(trace_id: bytes = TRACE, span_id: bytes = SPAN, scores: dict[str, float] | None = None, **attributes: Any) -> Span:
    span = Span(trace_id=trace_id, span_id=span_id, name="chat", start_time_unix_nano=START,
                end_time_unix_nano=START + 10**9,
                attributes=[kv("gen_ai.operation.name", "chat"), *(kv(k, v) for k, v in attributes.items())])
    for name, score in (scores or {}).items():
        span.events.add(name=otlp.EVENT_NAME, attributes=evaluation(name, score))
    return span


def logs(*scores: tuple[bytes, bytes, str, float]) -> ExportLogsServiceRequest:
    records = [LogRecord(trace_id=t, span_id=s, event_name=otlp.EVENT_NAME, attributes=evaluation(n, v))
               for t, s, n, v in scores]
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])])


class MemoryTable(FlakyTable):
    """FlakyTable with merges; a merge into an item whose pk holds a text of `fail` fails."""

    def __init__(self, fail: set[str] | None = None):
        super().__init__(refuse=set())
        self.fail = fail or set()

    def merge_many(self, updates: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any] | None]:
        out = []
        for pk, sk, values in updates:
            if any(text in pk for text in self.fail):
                out.append(None)
                continue
            item = self.items.setdefault((pk, sk), {"pk": pk, "sk": sk})
            item.update(values)
            out.append(dict(item))
        return out


class Stream(Client):
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for call in self.calls for line in call]


def receive(table: MemoryTable, stream: Stream, request: Any, mapping: otlp.Mapping = otlp.Mapping()) -> telemetry.Outcome:
    eval_stream = evals.EvalStream(stream, "s")
    if isinstance(request, ExportTraceServiceRequest):
        spans, _ = otlp.spans(request)
        return telemetry.receive_spans(table, eval_stream, "p", spans, mapping, IngestPolicy())
    found, _ = otlp.log_evaluations(request)
    return telemetry.receive_evaluations(table, eval_stream, "p", found, mapping, IngestPolicy())


@pytest.mark.parametrize("order", ["span_first", "scores_first", "inline"])
def test_a_span_and_its_overall_score_make_one_record_whatever_comes_first(order: str) -> None:
    table, stream = MemoryTable(), Stream()
    mapping = otlp.Mapping(overall="helpfulness", low=1, high=5)
    span = chat(scores={"helpfulness": 4, "toxicity": 0.0} if order == "inline" else None,
                **{"feedback_loop.user_cohort": "pro"})
    steps = {"span_first": [traces(span), logs((TRACE, SPAN, "toxicity", 0.0)), logs((TRACE, SPAN, "helpfulness", 4))],
             "scores_first": [logs((TRACE, SPAN, "helpfulness", 4), (TRACE, SPAN, "toxicity", 0.0)), traces(span)],
             "inline": [traces(span)]}[order]
    outcomes = [receive(table, stream, step, mapping) for step in steps]
    assert sum(o.records for o in outcomes) == 1 and not any(o.retry for o in outcomes)
    [line] = stream.lines()
    assert line["request_id"] == TRACE.hex() and line["eval_scores"] == {"overall": 0.75, "toxicity": 0.0}
    assert line["timestamp"] == "2026-05-17T06:40:00.000000Z"
    assert line["metadata"]["user_cohort"] == "pro" and line["_feedback_loop"]["project"] == "p"
    # sent again (an exporter's retry): nothing delivered twice; a late score is not sent (said where
    # the span waited in an item; a span that came with its score was sent without one)
    again = receive(table, stream, traces(span), mapping)
    late = receive(table, stream, logs((TRACE, SPAN, "relevance", 0.5)), mapping)
    assert len(stream.lines()) == 1 and again.records == 0 and late.records == 0
    assert late.passed_over["late_scores"] == (order != "inline")
    stored = [i for i in table.items.values() if i.get("entity") == "otel"]
    assert (order == "inline") == (not any("span" in i for i in stored))  # the inline span was never stored


def test_nothing_is_acknowledged_that_was_not_kept() -> None:
    table, stream = MemoryTable(fail={SPAN.hex()}), Stream()
    outcome = receive(table, stream, traces(chat()))
    assert outcome.retry and not stream.calls  # the span's item could not be written: 503, the exporter resends
    table.fail.clear()
    assert not receive(table, stream, traces(chat(**{"feedback_loop.x": "refuse-me"}))).retry
    refused = receive(table, stream, logs((TRACE, SPAN, "overall", 0.9)))
    assert refused.retry and refused.records == 0  # the stream did not take the record: not marked
    assert not any(item.get(telemetry.EMITTED) for item in table.items.values())
    assert receive(table, stream, traces(chat())).records == 1  # the span resent completes it
    # a span with its own score: refused by the stream, nothing kept, sent again whole
    other = chat(trace_id=b"\2" * 16, scores={"overall": 0.4}, **{"feedback_loop.x": "refuse-me"})
    direct = receive(table, stream, traces(other))
    assert direct.retry and not any(b"\2" * 16 == bytes.fromhex(k[0].split("#")[2]) for k in table.items
                                    if k[0].startswith("OTEL#"))
    assert receive(table, stream, traces(chat(trace_id=b"\2" * 16, scores={"overall": 0.4}))).records == 1


def test_refused_records_and_unusable_evaluations_are_counted_by_reason() -> None:
    table, stream = MemoryTable(), Stream()
    out_of_range = receive(table, stream, traces(chat(scores={"overall": 1.5})))
    assert out_of_range.rejected == {"record_refused_422:eval_scores.overall": 1} and not stream.calls
    found, rejected = otlp.log_evaluations(logs((b"", b"", "overall", 0.5), (TRACE, SPAN, "", 0.5)))
    assert not found and rejected == {"evaluation_without_span_context": 1, "evaluation_without_name": 1}
    spans, rejected = otlp.spans(traces(chat(span_id=b"\0" * 8), Span(trace_id=TRACE, span_id=SPAN, name="x")))
    assert not spans and rejected == {"invalid_trace_or_span_id": 1, "no_start_time": 1}
    # two evaluated spans of one trace, request id = trace: the second is a conflict, said
    other = chat(span_id=bytes.fromhex("aaaaaaaaaaaaaaaa"), scores={"overall": 0.2})
    both = receive(MemoryTable(), Stream(), traces(chat(scores={"overall": 0.9}), other))
    assert both.records == 1 and both.rejected == {"record_refused_409:request_id": 1}


def test_the_request_id_and_the_fields_each_mapping_reads() -> None:
    span = chat(**{"gen_ai.response.id": "chatcmpl-1", "gen_ai.request.model": "m-1", "gen_ai.input.messages":
                   '[{"role": "user", "content": "hi"}]', "output.value": "hello", "session.id": "s-9"})
    [read], _ = otlp.spans(traces(span, resource={"service.name": "bot", "feedback_loop.prompt_version": "v7"}))
    base = otlp.record_base(read, otlp.Mapping(request_id="gen_ai.response.id"))
    assert base["request_id"] == "chatcmpl-1" and base["prompt"] == [{"role": "user", "content": "hi"}]
    assert base["output"] == "hello"
    assert {k: base["metadata"][k] for k in ("model", "operation", "service", "session_id", "prompt_version")} == {
        "model": "m-1", "operation": "chat", "service": "bot", "session_id": "s-9", "prompt_version": "v7"}
    assert otlp.record_base(read, otlp.Mapping(request_id="span"))["request_id"] == SPAN.hex()
    [long], _ = otlp.spans(traces(chat(**{"input.value": "é" * 200_000, "output.value": "short"})))
    cut = otlp.record_base(long, otlp.Mapping())
    assert len(cut["prompt"].encode()) <= otlp.MAX_TEXT_BYTES and cut["prompt"] == "é" * (otlp.MAX_TEXT_BYTES // 2)
    assert cut["metadata"]["prompt_truncated"] == "true" and "output_truncated" not in cut["metadata"]
    assert otlp.record_base(read, otlp.Mapping(request_id="no.such.attribute")) is None
    # a child span that is not a GenAI one is not a request; a root span is
    plain = Span(trace_id=TRACE, span_id=SPAN, parent_span_id=b"\1" * 8, name="db", start_time_unix_nano=START)
    root = Span(trace_id=TRACE, span_id=SPAN, name="POST /chat", start_time_unix_nano=START)
    annotated = Span(trace_id=TRACE, span_id=SPAN, parent_span_id=b"\1" * 8, name="step", start_time_unix_nano=START,
                     attributes=[kv("annotations.0.annotation.name", "liked"), kv("annotations.0.annotation.score", 1.0),
                                 kv("annotations.0.annotation.annotator_kind", "HUMAN")])
    assert [otlp.can_be_request(s) for s in otlp.spans(traces(plain, root, annotated))[0]] == [False, True, True]


def test_mapping_headers() -> None:
    mapping = otlp.Mapping.from_headers({"X-Feedback-Loop-Overall": "Builtin.Helpfulness",
                                         "x-feedback-loop-overall-range": "1, 5", "x-feedback-loop-request-id": "span"})
    assert (mapping.overall, mapping.low, mapping.high, mapping.request_id) == ("Builtin.Helpfulness", 1, 5, "span")
    assert mapping.overall_score(2) == 0.25 and otlp.Mapping.from_headers({}) == otlp.Mapping()
    for bad in ("5,1", "1", "a,b"):
        with pytest.raises(otlp.OtlpError) as error:
            otlp.Mapping.from_headers({"x-feedback-loop-overall-range": bad})
        assert error.value.field == "x-feedback-loop-overall-range"


def test_otlp_json_protobuf_and_compression_read_the_same() -> None:
    request = traces(chat(scores={"overall": 0.5}))
    binary = request.SerializeToString()
    from google.protobuf.json_format import MessageToDict

    document = MessageToDict(request)  # protobuf's JSON: base64 ids; OTLP/JSON's are hex
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["traceId"], span["spanId"] = TRACE.hex().upper(), SPAN.hex()
    span["unknownField"] = {"ignored": True}
    text = json.dumps(document).encode()
    read = [otlp.decode("traces", binary, otlp.PROTOBUF),
            otlp.decode("traces", gzip.compress(binary), otlp.PROTOBUF, "gzip"),
            otlp.decode("traces", zlib.compress(binary), otlp.PROTOBUF, "deflate"),
            otlp.decode("traces", text, "application/json; charset=utf-8"),
            otlp.decode("traces", gzip.compress(text), otlp.JSON, "gzip")]
    assert all(r == request for r in read)
    for body, media, encoding, field in ((b"\x0a\xff", otlp.PROTOBUF, None, "body"), (b"[]", otlp.JSON, None, "body"),
                                         (b"{", otlp.JSON, None, "body"), (binary, "text/plain", None, "content-type"),
                                         (binary, otlp.PROTOBUF, "br", "content-encoding"),
                                         (binary, otlp.PROTOBUF, "gzip", "body")):
        with pytest.raises(otlp.OtlpError) as error:
            otlp.decode("traces", body, media, encoding)
        assert error.value.field == field


def test_a_compressed_body_inflating_past_the_limit_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(otlp, "MAX_INFLATED_BYTES", 1000)
    with pytest.raises(otlp.OtlpError, match="inflates to more than"):
        otlp.decode("traces", gzip.compress(b"\0" * 10_000), otlp.PROTOBUF, "gzip")


def test_openinference_annotations_split_into_scores_and_peoples_feedback() -> None:
    span = chat(**{"annotations.0.annotation.name": "correctness", "annotations.0.annotation.score": 0.8,
                   "annotations.0.annotation.annotator_kind": "LLM",
                   "annotations.1.annotation.name": "user_feedback", "annotations.1.annotation.label": "thumbs_up",
                   "annotations.1.annotation.annotator_kind": "HUMAN",
                   "annotations.1.annotation.metadata": '{"user_id": "u-1"}'})
    [read], _ = otlp.spans(traces(span))
    assert [(e.name, e.score) for e in read.evaluations] == [("correctness", 0.8)]
    [person] = read.annotations
    assert (person.value, person.user_id, person.human) == ("thumbs_up", "u-1", True)
    table, stream = MemoryTable(), Stream()
    outcome = receive(table, stream, traces(span), otlp.Mapping(overall="correctness"))
    assert outcome.feedback == 1 and outcome.records == 1
    [stored] = [i for i in table.items.values() if i.get("feedback_type")]
    assert (stored["feedback_type"], stored["request_id"], stored["user_id"]) == ("explicit_thumbs_up", TRACE.hex(), "u-1")
    assert receive(table, stream, traces(span), otlp.Mapping(overall="correctness")).feedback == 0  # once


def test_records_as_cloudwatch_keeps_them() -> None:
    """AgentCore's evaluation results and Transaction Search's spans: flat JSON objects."""
    result_document = {"traceId": TRACE.hex(), "spanId": SPAN.hex(), "timeUnixNano": START,
                       "attributes": {"gen_ai.evaluation.name": "Builtin.Helpfulness",
                                      "gen_ai.evaluation.score.value": 0.83,
                                      "gen_ai.evaluation.score.label": "Very Helpful", "session.id": "s"},
                       "body": {"explanation": "..."}}
    result = otlp.from_cloudwatch(result_document)
    assert result == otlp.Evaluation(TRACE.hex(), SPAN.hex(), "Builtin.Helpfulness", 0.83, "Very Helpful", None)
    span_document = {"traceId": TRACE.hex(), "spanId": SPAN.hex(), "name": "invoke_agent",
                     "startTimeUnixNano": START, "endTimeUnixNano": START + 10**9,
                     "attributes": {"gen_ai.operation.name": "invoke_agent", "session.id": "s"},
                     "resource": {"attributes": {"service.name": "agent"}}}
    span = otlp.from_cloudwatch(span_document)
    assert isinstance(span, otlp.Span) and span.start == datetime.fromtimestamp(START / 1e9, timezone.utc)
    assert span.attributes["service.name"] == "agent" and otlp.can_be_request(span)
    assert otlp.from_cloudwatch({"message": "plain log line"}) is None
    # numbers no clock or score holds: not a span, no score; never an error
    for start in (10**400, "1e300", -1e30):
        assert otlp.from_cloudwatch({**span_document, "startTimeUnixNano": start}) is None
    huge = otlp.from_cloudwatch({**result_document, "attributes": {"gen_ai.evaluation.name": "x",
                                                                    "gen_ai.evaluation.score.value": 10**400}})
    assert huge is not None and huge.score is None


def _read_all(kind: str, body: bytes, media: str) -> None:
    """Everything the API does with an export before storage: read, list, map. Only OtlpError may come out."""
    try:
        export = otlp.decode(kind, body, media)
    except otlp.OtlpError:
        return
    if kind == "traces":
        found, _ = otlp.spans(export)
        for span in found:
            otlp.can_be_request(span)
            otlp.record_base(span, otlp.Mapping(request_id="gen_ai.response.id"))
            otlp.record_base(span, otlp.Mapping())
    else:
        otlp.log_evaluations(export)


HOSTILE = [b'{"resourceSpans": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
           b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "0102", '
           b'"startTimeUnixNano": "' + b"9" * 5000 + b'"}]}]}]}',
           b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "a", "value": '
           + b'{"kvlistValue": {"values": [{"key": "b", "value": ' * 200 + b'{"intValue": 1}' + b"}]}}" * 200
           + b"}]}]}]}]}",
           b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\\ud800", "startTimeUnixNano": 1}]}]}]}',
           b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"eventName": "gen_ai.evaluation.result", '
           b'"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "attributes": '
           b'[{"key": "gen_ai.evaluation.name", "value": {"arrayValue": {}}}]}]}]}]}']


@pytest.mark.parametrize("body", HOSTILE, ids=["deep", "huge-number", "deep-attribute", "surrogate", "array-name"])
def test_hostile_json_exports_are_refused_or_read_never_a_crash(body: bytes) -> None:
    for kind in ("traces", "logs"):
        _read_all(kind, body, otlp.JSON)


def test_random_bytes_and_mutated_exports_are_refused_or_read() -> None:
    from hypothesis import given, settings, strategies as st

    valid = traces(chat(scores={"overall": 0.5}, **{"input.value": "hi"})).SerializeToString()

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.binary(max_size=400), st.integers(0, len(valid) - 1), st.binary(min_size=1, max_size=8))
    def check(noise: bytes, at: int, patch: bytes) -> None:
        for body in (noise, valid[:at] + patch + valid[at + len(patch):], valid[:at]):
            for kind in ("traces", "logs"):
                _read_all(kind, body, otlp.PROTOBUF)

    check()


def test_openinference_evaluations_are_read_like_its_annotations() -> None:
    span = chat(**{"evaluations.0.evaluation.name": "correctness", "evaluations.0.evaluation.score": 0.7,
                   "evaluations.0.evaluation.annotator_kind": "LLM",
                   "annotations.0.annotation.name": "relevance", "annotations.0.annotation.score": 0.4,
                   "annotations.0.annotation.annotator_kind": "CODE",
                   "evaluations.1.evaluation.name": "user_rating", "evaluations.1.evaluation.score": 2,
                   "evaluations.1.evaluation.annotator_kind": "HUMAN"})
    [read], _ = otlp.spans(traces(span))
    assert sorted((e.name, e.score) for e in read.evaluations) == [("correctness", 0.7), ("relevance", 0.4)]
    [person] = read.annotations
    assert (person.name, person.value, person.human) == ("user_rating", 2, True)


def test_an_openinference_llm_spans_prompt_and_output_are_its_messages_not_its_bodies() -> None:
    body_in = json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "model": "gpt-x", "temperature": 0})
    body_out = json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"role": "assistant", "content": "4"}}],
                           "usage": {"total_tokens": 9}})
    span = chat(**{"openinference.span.kind": "LLM", "input.value": body_in, "output.value": body_out,
                   "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be brief.",
                   "llm.input_messages.1.message.role": "user",
                   "llm.input_messages.1.message.contents.0.message_content.text": "2+2?",
                   "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "4"})
    [read], _ = otlp.spans(traces(span))
    record = otlp.record_base(read, otlp.Mapping())
    assert record["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert record["output"] == [{"role": "assistant", "content": "4"}]
    # a CHAIN span with only its bodies keeps them
    [chain], _ = otlp.spans(traces(chat(**{"openinference.span.kind": "CHAIN", "input.value": "question",
                                           "output.value": "answer"})))
    assert otlp.record_base(chain, otlp.Mapping())["prompt"] == "question"


def _chain(span_id: bytes, scores: dict[str, float] | None = None, **attributes: Any) -> Span:
    span = Span(trace_id=TRACE, span_id=span_id, name="agent", start_time_unix_nano=START,
                end_time_unix_nano=START + 3 * 10**9,
                attributes=[kv("openinference.span.kind", "CHAIN"), kv("input.value", "What is our refund policy?"),
                            kv("output.value", "30 days."), *(kv(k, v) for k, v in attributes.items())])
    for name, score in (scores or {}).items():
        span.events.add(name=otlp.EVENT_NAME, attributes=evaluation(name, score))
    return span


def _llm(span_id: bytes, parent: bytes, model: str) -> Span:
    return Span(trace_id=TRACE, span_id=span_id, parent_span_id=parent, name="ChatCompletion",
                start_time_unix_nano=START + 10**9, end_time_unix_nano=START + 2 * 10**9,
                attributes=[kv("openinference.span.kind", "LLM"), kv("llm.model_name", model)])


ROOT, CHILD, OTHER = bytes.fromhex("aaaaaaaaaaaaaaaa"), bytes.fromhex("bbbbbbbbbbbbbbbb"), bytes.fromhex("cccccccccccccccc")


@pytest.mark.parametrize("exports", ["together", "child_first"])
def test_a_chain_span_takes_the_model_of_its_child_llm_span(exports: str) -> None:
    """A request judged on an OpenInference CHAIN (or AGENT) span has no model of its own: it takes
    its child LLM span's, whether the child came in the same export or an earlier one (a child ends,
    and is exported, first; Phoenix's register() sends one span per export)."""
    table, stream = MemoryTable(), Stream()
    mapping = otlp.Mapping(overall="helpfulness", low=1, high=5, request_id="span")
    root, child = _chain(ROOT, {"helpfulness": 5}), _llm(CHILD, ROOT, "gpt-4o-mini-2024-07-18")
    steps = [traces(root, child)] if exports == "together" else [traces(child), traces(root)]
    assert not any(receive(table, stream, step, mapping).retry for step in steps)
    [line] = [line for line in stream.lines() if line["request_id"] == ROOT.hex()]
    assert line["metadata"]["model"] == "gpt-4o-mini-2024-07-18"
    assert line["metadata"]["model_from"] == "child_llm_span" and "models" not in line["metadata"]


def test_a_chain_span_keeps_its_own_model_and_never_guesses_between_two() -> None:
    table, stream = MemoryTable(), Stream()
    mapping = otlp.Mapping(overall="helpfulness", low=1, high=5, request_id="span")
    receive(table, stream, traces(_llm(CHILD, ROOT, "model-a"), _llm(OTHER, ROOT, "model-b")), mapping)
    receive(table, stream, traces(_chain(ROOT, {"helpfulness": 4})), mapping)
    [line] = stream.lines()
    assert "model" not in line["metadata"] and line["metadata"]["models"] == "model-a,model-b"
    table, stream = MemoryTable(), Stream()
    own = _chain(ROOT, {"helpfulness": 4}, **{"llm.model_name": "router-1"})
    receive(table, stream, traces(own, _llm(CHILD, ROOT, "model-a")), mapping)
    [line] = stream.lines()
    assert line["metadata"]["model"] == "router-1" and "model_from" not in line["metadata"]


def test_records_carry_the_calibrators_figures_beside_the_raw_score() -> None:
    from feedback_loop.calibration.curves import CalibrationMap, Curve, Target
    from feedback_loop.logic.calibration import InService

    curve = Target("isotonic", curve=Curve((0.0, 1.0), (0.1, 0.6)))
    calibration_map = CalibrationMap(curve, curve)
    table, stream = MemoryTable(), Stream()
    mapping = otlp.Mapping(overall="helpfulness", low=1, high=5)
    spans, _ = otlp.spans(traces(chat(scores={"helpfulness": 4})))
    telemetry.receive_spans(table, evals.EvalStream(stream, "s"), "p", spans, mapping, IngestPolicy(),
                            calibrator=InService("map-1", calibration_map.dumps(), calibration_map))
    [line] = stream.lines()
    assert line["eval_scores"]["overall"] == 0.75 and line["eval_scores"]["calibrated"] == pytest.approx(0.475)
    assert line["metadata"]["calibration_map"] == "map-1"
