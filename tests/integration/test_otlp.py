"""OpenTelemetry in, on the local stack: an app instrumented with the OpenTelemetry SDK exports its
GenAI spans and its evaluator's `gen_ai.evaluation.result` events with the SDK's OTLP/HTTP
exporters to `POST /v1/traces` and `/v1/logs`; its users' feedback comes through the API; the
weekly analysis (the state machine) then reports on those requests."""

from __future__ import annotations

import gzip
import json
import random
from datetime import datetime, timedelta, timezone

import boto3
import pytest
import requests
from scipy import stats

from feedback_loop.analysis.weekly import reports_prefix
from feedback_loop.client import FeedbackClient

from ..conftest import Api
from .test_eval_pipe import _objects

pytestmark = pytest.mark.integration

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider  # noqa: E402
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

EVALUATION = "gen_ai.evaluation.result"


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


class InstrumentedApp:
    """An LLM app as OpenTelemetry instruments it: one `chat` span per request (GenAI conventions),
    its evaluator's results as events, exported by the SDK's own OTLP/HTTP exporters."""

    def __init__(self, api_url: str, key: str, headers: dict[str, str], compression: Compression | None = None):
        headers = {"x-api-key": key, **headers}
        resource = Resource.create({"service.name": "support-bot"})
        self.spans = TracerProvider(resource=resource)
        self.spans.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=f"{api_url}/v1/traces", headers=headers, compression=compression)))
        self.logs = LoggerProvider(resource=resource)
        self.logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
            endpoint=f"{api_url}/v1/logs", headers=headers, compression=compression)))
        self.tracer = self.spans.get_tracer("support-bot")
        self.logger = self.logs.get_logger("support-bot.evaluator")

    def request(self, at: datetime, cohort: str, helpfulness: int, *, inline: bool) -> tuple[str, trace.Span]:
        """One chat request at `at`; its evaluation (1-5) on the span itself when `inline`."""
        span = self.tracer.start_span("chat gpt-4o", start_time=_nanos(at), attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Hello"}]}]),
            "feedback_loop.user_cohort": cohort, "feedback_loop.query_type": "support"})
        if inline:
            span.add_event(EVALUATION, self.evaluation("helpfulness", helpfulness), timestamp=_nanos(at))
            span.add_event(EVALUATION, self.evaluation("toxicity", 0), timestamp=_nanos(at))
        span.end(end_time=_nanos(at + timedelta(seconds=2)))
        return trace.format_trace_id(span.get_span_context().trace_id), span

    @staticmethod
    def evaluation(name: str, score: float) -> dict:
        return {"gen_ai.evaluation.name": name, "gen_ai.evaluation.score.value": score,
                "gen_ai.evaluation.score.label": "good" if score >= 4 else "poor",
                "gen_ai.evaluation.explanation": f"{name} judged {score}"}

    def evaluate_later(self, span: trace.Span, helpfulness: int) -> None:
        """An evaluator scoring the span after the fact: a log record in the span's context."""
        self.logger.emit(event_name=EVALUATION, context=trace.set_span_in_context(span),
                         attributes=self.evaluation("helpfulness", helpfulness))

    def flush(self) -> None:
        assert self.spans.force_flush(10_000) and self.logs.force_flush(10_000)


def test_an_instrumented_app_is_analysed_by_the_weekly_run(stack, table, api_key: str, project: str) -> None:
    """60 requests over the week before; half scored on the span, half by log records (some before
    their span is exported); users' thumbs about 40 of them; the scheduled analysis reports exactly
    those requests, with the correlation scipy gives on the same pairs."""
    until = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    rng = random.Random(5)
    app = InstrumentedApp(stack.api_url, api_key, {"x-feedback-loop-overall": "helpfulness",
                                                   "x-feedback-loop-overall-range": "1,5"})
    sent = []
    later = []
    for i in range(60):
        at = until - timedelta(days=6, hours=12) + timedelta(hours=2.5 * i)
        helpfulness = rng.randint(1, 5)
        cohort = "pro" if i % 3 else "free"
        request_id, span = app.request(at, cohort, helpfulness, inline=i % 2 == 0)
        sent.append((request_id, cohort, helpfulness))
        if i % 2:
            later.append((span, helpfulness))
    for span, helpfulness in later[:10]:  # scored before the spans leave the app
        app.evaluate_later(span, helpfulness)
    app.flush()
    for span, helpfulness in later[10:]:
        app.evaluate_later(span, helpfulness)
    app.flush()

    users = FeedbackClient(stack.api_url, api_key)
    labelled = {}
    for request_id, cohort, helpfulness in sent[:40]:
        good = rng.random() < (helpfulness - 0.5) / 5  # users agree with the evaluator, noisily
        users.send(request_id, "explicit_thumbs_up" if good else "explicit_thumbs_down", True, user_cohort=cohort)
        labelled[request_id] = (float(good), (helpfulness - 1) / 4)

    # the records, as the stream wrote them
    records = {record["request_id"]: record for rows in _objects(stack, project).values() for record in rows}
    assert set(records) == {request_id for request_id, _, _ in sent}
    for request_id, cohort, helpfulness in sent:
        record = records[request_id]
        assert record["eval_scores"]["overall"] == pytest.approx((helpfulness - 1) / 4)
        assert record["metadata"]["user_cohort"] == cohort and record["metadata"]["model"] == "gpt-4o"
        assert record["metadata"]["service"] == "support-bot" and record["metadata"]["overall_evaluation"] == "helpfulness"
    inline = records[sent[0][0]]
    assert inline["eval_scores"]["toxicity"] == 0 and inline["prompt"][0]["role"] == "user"
    assert inline["output"][0]["parts"][0]["content"] == "Hello"

    execution = stack.states.execute("AnalysisStateMachine", {
        "time": until.strftime("%Y-%m-%dT%H:%M:%SZ"), "engine": "embedded", "projects": [project]})
    assert execution["status"] == "SUCCEEDED", execution
    report = json.loads(boto3.client("s3").get_object(Bucket=stack.bucket, Key=reports_prefix(project, until) + "report.json")["Body"].read())
    assert report["counts"]["eval_records"] == 60
    assert report["counts"]["requests_with_feedback"] == 40 and report["counts"]["skipped_lines"] == 0
    assert {c: report["cohorts"][c]["requests"] for c in ("free", "pro")} == {"free": 20, "pro": 40}
    human, evaluator = zip(*labelled.values())
    expected = stats.pearsonr(evaluator, human)
    assert report["correlation"]["overall"]["n"] == 40
    assert report["correlation"]["overall"]["pearson"]["r"] == pytest.approx(expected.statistic, abs=1e-9)


def _export(app_trace_id: str, span_id: str, attributes: list[dict], events: list[dict] | None = None) -> dict:
    """An OTLP/JSON traces export of one span (hex ids, as the specification writes them)."""
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bot"}}]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": [{
                                   "traceId": app_trace_id, "spanId": span_id, "name": "chat",
                                   "startTimeUnixNano": "1779000000000000000", "endTimeUnixNano": "1779000001000000000",
                                   "attributes": attributes, "events": events or []}]}]}]}


def _string(key: str, value: str) -> dict:
    return {"key": key, "value": {"stringValue": value}}


def test_otlp_json_people_annotations_and_refusals(stack, http: Api, api_key: str, project: str) -> None:
    """OTLP/JSON with hex ids; an OpenInference HUMAN annotation becomes a feedback event (once, however
    often the export is sent); an LLM annotation is a score; what cannot be read is a 400 naming it."""
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    attributes = [_string("openinference.span.kind", "LLM"), _string("llm.model_name", "claude"),
                  _string("input.value", "What is 2+2?"), _string("output.value", "4"),
                  _string("annotations.0.annotation.name", "correctness"),
                  {"key": "annotations.0.annotation.score", "value": {"doubleValue": 0.9}},
                  _string("annotations.0.annotation.annotator_kind", "LLM"),
                  _string("annotations.1.annotation.name", "user_feedback"),
                  _string("annotations.1.annotation.label", "thumbs_down"),
                  _string("annotations.1.annotation.annotator_kind", "HUMAN"),
                  _string("annotations.1.annotation.explanation", "wrong format")]
    headers = {"x-api-key": api_key, "content-type": "application/json", "x-feedback-loop-overall": "correctness",
               "x-feedback-loop-request-id": "span"}
    body = json.dumps(_export(trace_id, span_id, attributes))
    for _ in range(2):  # a resent export stores nothing twice
        answer = requests.post(f"{stack.api_url}/v1/traces", data=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
    summary = http.get(f"/v1/requests/{span_id}/feedback").json()
    assert summary["counts"]["explicit_thumbs_down"] == 1 and summary["counts"]["explicit_text_comment"] == 1

    files = _objects(stack, project)
    assert len(files) == 1 and "dt=2026-05-17" in next(iter(files))
    [[record]] = files.values()
    assert record["request_id"] == span_id and record["eval_scores"] == {"overall": 0.9}
    assert record["prompt"] == "What is 2+2?" and record["metadata"]["model"] == "claude"
    assert record["metadata"]["trace_id"] == trace_id

    # refusals name what is wrong; nothing is half-kept
    bad = requests.post(f"{stack.api_url}/v1/traces", data=b"\x0a\xff\xff", timeout=30,
                        headers={**headers, "content-type": "application/x-protobuf"})
    assert bad.status_code == 400 and bad.json()["error"]["fields"][0]["field"] == "body"
    wrong_type = requests.post(f"{stack.api_url}/v1/traces", data="x", headers={**headers, "content-type": "text/plain"},
                               timeout=30)
    assert wrong_type.status_code == 415
    bad_range = requests.post(f"{stack.api_url}/v1/traces", data=body, timeout=30,
                              headers={**headers, "x-feedback-loop-overall-range": "5,1"})
    assert bad_range.status_code == 400 and bad_range.json()["error"]["fields"][0]["field"] == "x-feedback-loop-overall-range"
    assert requests.post(f"{stack.api_url}/v1/traces", data=body, timeout=30,
                         headers={"content-type": "application/json"}).status_code == 401
    # an overall score out of its range: the record is refused, the export says so (partial success)
    out_of_range = _export("6b8efff798038103d269b633813fc60c", "fee19b7ec3c1b174", attributes[:2], events=[{
        "name": EVALUATION, "timeUnixNano": "1779000000000000000",
        "attributes": [_string("gen_ai.evaluation.name", "correctness"),
                       {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue": 1.5}}]}])
    refused = requests.post(f"{stack.api_url}/v1/traces", data=json.dumps(out_of_range), headers=headers, timeout=30)
    assert refused.status_code == 200
    partial = refused.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "eval_scores.overall" in partial["errorMessage"]
    assert len(_objects(stack, project)) == 1


def test_a_gzip_protobuf_export_and_the_protobuf_answer(stack, api_key: str, project: str) -> None:
    """The SDK's gzip protobuf export is read; the protobuf answer parses as the export's response."""
    app = InstrumentedApp(stack.api_url, api_key, {}, compression=Compression.Gzip)
    at = datetime.now(timezone.utc) - timedelta(hours=1)
    span = app.tracer.start_span("chat", start_time=_nanos(at), attributes={"gen_ai.operation.name": "chat"})
    span.add_event(EVALUATION, app.evaluation("overall", 0.75))
    span.end()
    app.flush()
    assert len(_objects(stack, project)) == 1
    # the answer in the request's encoding
    request = ExportTraceServiceRequest()
    answer = requests.post(f"{stack.api_url}/v1/traces", data=request.SerializeToString(), timeout=30,
                           headers={"x-api-key": api_key, "content-type": "application/x-protobuf"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-protobuf"
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    assert not ExportTraceServiceResponse.FromString(answer.content).HasField("partial_success")


def _awslogs(log_group: str, messages: list[dict]) -> dict:
    """A CloudWatch Logs subscription's event, as Lambda receives it."""
    import base64

    data = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": log_group, "logStream": "s",
            "subscriptionFilters": ["f"], "logEvents": [
                {"id": str(i), "timestamp": 1779000000000, "message": json.dumps(m)} for i, m in enumerate(messages)]}
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()}}


def test_agentcore_results_and_spans_through_the_log_subscription(stack, project: str, monkeypatch) -> None:
    """The template's AgentCore option: the subscription function, as the template configures it for
    a project, pairs AgentCore's evaluation results (their log group) with the agent's spans
    (aws/spans, Transaction Search) into eval records; a batch not kept fails for Lambda to retry."""
    from pathlib import Path

    from feedback_loop.local.runtime import LambdaContext, load_module
    from feedback_loop.local.template import Template

    template = Template(Path(stack.template.path), stack_name=stack.template.stack_name, parameters={
        "AgentCoreProject": project, "AgentCoreEvaluationLogGroup": "/aws/bedrock-agentcore/evaluations/results/c-1",
        "AgentCoreRequestId": "session.id"})
    assert {"AgentCoreEvaluationSubscription", "AgentCoreSpanSubscription"} <= set(
        template.of_type("AWS::Logs::SubscriptionFilter"))
    spec = next(f for f in template.functions() if f.logical_id == "AgentCoreFunction")
    for name, value in spec.environment.items():
        monkeypatch.setenv(name, value)
    handler = load_module(spec).lambda_handler
    context = LambdaContext("AgentCoreFunction", timeout_seconds=120)
    trace_id, span_id, start = "6d8efff798038103d269b633813fc60c", "ace19b7ec3c1b174", 1779000000000000000
    result = {"traceId": trace_id, "spanId": span_id, "timeUnixNano": start + 5 * 10**9,
              "attributes": {"gen_ai.evaluation.name": "Builtin.Helpfulness", "gen_ai.evaluation.score.value": 0.83,
                             "gen_ai.evaluation.score.label": "Very Helpful", "session.id": "sess-1"}}
    other = {**result, "attributes": {**result["attributes"], "gen_ai.evaluation.name": "Builtin.Correctness",
                                      "gen_ai.evaluation.score.value": 1.0}}
    span = {"traceId": trace_id, "spanId": span_id, "name": "invoke_agent support", "startTimeUnixNano": start,
            "endTimeUnixNano": start + 3 * 10**9, "resource": {"attributes": {"service.name": "support-agent"}},
            "attributes": {"gen_ai.operation.name": "invoke_agent", "session.id": "sess-1",
                           "gen_ai.request.model": "claude-sonnet"}}
    first = handler(_awslogs("/aws/bedrock-agentcore/evaluations/results/c-1", [result, other, {"plain": 1}]), context)
    assert (first["evaluations"], first["records"], first["skipped"]) == (2, 0, {"not_a_span_or_evaluation": 1})
    second = handler(_awslogs("aws/spans", [span]), context)
    assert (second["spans"], second["records"]) == (1, 1)
    assert handler({"awslogs": _awslogs("x", [])["awslogs"]}, context)["records"] == 0
    [[record]] = _objects(stack, project).values()
    assert record["request_id"] == "sess-1" and record["eval_scores"] == {"overall": 0.83, "Builtin.Correctness": 1.0}
    assert record["metadata"]["model"] == "claude-sonnet" and record["metadata"]["service"] == "support-agent"
    # the stream unavailable: the invocation fails (Lambda retries, then FailedEventsQueue), nothing marked
    monkeypatch.setenv("EVAL_LOG_STREAM", "no-such-stream")
    handler = load_module(spec).lambda_handler
    later = {**span, "spanId": "bce19b7ec3c1b174", "attributes": {**span["attributes"], "session.id": "sess-2"}}
    with pytest.raises(Exception, match="not kept"):
        handler(_awslogs("aws/spans", [later, {**result, "spanId": "bce19b7ec3c1b174"}]), context)


@pytest.mark.parametrize("value, rating, score", [({"intValue": "1"}, 1, 0.0), ({"intValue": "4"}, 4, 0.75),
                                                  ({"doubleValue": 1.0}, 5, 1.0), ({"doubleValue": 0.25}, 2, 0.25)])
def test_a_lone_human_rating_is_read_by_the_rule_not_by_its_batch(stack, http: Api, api_key: str, value: dict,
                                                                   rating: int, score: float) -> None:
    """Phoenix's register() sends one span per export: a rating of 1 (intValue) alone was read as a 0-1
    score of 1.0, 'ratings 1, mean_rating 5.0, human score 1.0'. Integers 1-5 are ratings, floats 0-1 scores."""
    span_id = f"{rating:02d}{int(score * 100):03d}".ljust(16, "a")
    attributes = [_string("openinference.span.kind", "LLM"),
                  _string("annotations.0.annotation.name", "user_rating"),
                  {"key": "annotations.0.annotation.score", "value": value},
                  _string("annotations.0.annotation.annotator_kind", "HUMAN")]
    headers = {"x-api-key": api_key, "content-type": "application/json", "x-feedback-loop-request-id": "span"}
    answer = requests.post(f"{stack.api_url}/v1/traces", timeout=30, headers=headers,
                           data=json.dumps(_export("7b8efff798038103d269b633813fc60c", span_id, attributes)))
    assert answer.status_code == 200, answer.text
    summary = http.get(f"/v1/requests/{span_id}/feedback").json()
    assert summary["counts"]["explicit_rating"] == 1
    assert summary["mean_rating"] == rating and summary["human"]["score"] == score


def test_a_declared_human_scale_maps_the_scores(stack, http: Api, api_key: str) -> None:
    span_id = "bbbbbbbbbbbbbbb1"
    attributes = [_string("openinference.span.kind", "LLM"), _string("annotations.0.annotation.name", "stars"),
                  {"key": "annotations.0.annotation.score", "value": {"intValue": "10"}},
                  _string("annotations.0.annotation.annotator_kind", "HUMAN")]
    headers = {"x-api-key": api_key, "content-type": "application/json", "x-feedback-loop-request-id": "span",
               "x-feedback-loop-human-range": "1,10"}
    answer = requests.post(f"{stack.api_url}/v1/traces", timeout=30, headers=headers,
                           data=json.dumps(_export("8b8efff798038103d269b633813fc60c", span_id, attributes)))
    assert answer.status_code == 200, answer.text
    assert http.get(f"/v1/requests/{span_id}/feedback").json()["mean_rating"] == 5
    wrong = requests.post(f"{stack.api_url}/v1/traces", timeout=30, data=b"{}",
                          headers={**headers, "x-feedback-loop-human-range": "ten"})
    assert wrong.status_code == 400 and wrong.json()["error"]["fields"][0]["field"] == "x-feedback-loop-human-range"
