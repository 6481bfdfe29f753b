"""What OpenTelemetry in costs beside the eval-log pipe: records per second into the eval log, on one
local stack, through HTTP, the same requests logged three ways one after the other:

- `POST /v1/evals`: the eval records themselves, 500 a request (the EvalLogger's way);
- `POST /v1/traces`, evaluations on the spans: 500 GenAI spans a protobuf export, each with its
  `gen_ai.evaluation.result` event (one table write per span, then the records);
- `POST /v1/traces` then `POST /v1/logs`: the spans, then their evaluations as log records in a
  second export (two table writes per request: the pairing of logic/otlp.py).

    .venv/bin/python benchmarks/otlp.py [--requests 5000]

Figures of one run are comparable with each other (ratios); absolute numbers depend on the
(shared, noisy) machine and the emulator, which stands in for DynamoDB and Firehose over loopback.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.local.stack import LocalStack
from feedback_loop.logic.keys import create_key

BATCH = 500
EVENT = "gen_ai.evaluation.result"


def _kv(key: str, value: object) -> KeyValue:
    wrapped = AnyValue(double_value=value) if isinstance(value, float) else AnyValue(string_value=str(value))
    return KeyValue(key=key, value=wrapped)


def _evaluation(score: float) -> list[KeyValue]:
    return [_kv("gen_ai.evaluation.name", "overall"), _kv("gen_ai.evaluation.score.value", score)]


def _span(i: int, at: datetime, inline: bool) -> Span:
    nanos = int(at.timestamp() * 1e9)
    span = Span(trace_id=uuid.uuid4().bytes, span_id=os.urandom(8), name="chat", start_time_unix_nano=nanos,
                end_time_unix_nano=nanos + 10**9, attributes=[
                    _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", "m-1"),
                    _kv("gen_ai.input.messages", '[{"role": "user", "content": "Summarize the report, please."}]'),
                    _kv("gen_ai.output.messages", '[{"role": "assistant", "content": "The report says..."}]'),
                    _kv("feedback_loop.user_cohort", "pro" if i % 3 else "free")])
    if inline:
        span.events.add(name=EVENT, time_unix_nano=nanos, attributes=_evaluation((i % 100) / 100))
    return span


def _post(url: str, key: str, path: str, body: bytes | dict, protobuf: bool) -> None:
    headers = {"x-api-key": key, "content-type": "application/x-protobuf" if protobuf else "application/json"}
    answer = (requests.post(f"{url}{path}", data=body, headers=headers, timeout=120) if protobuf
              else requests.post(f"{url}{path}", json=body, headers=headers, timeout=120))
    assert answer.status_code in (200, 207), answer.text[:300]


def run(stack: LocalStack, n: int) -> dict[str, float]:
    table = FeedbackTable(stack.table_name)
    at = datetime.now(timezone.utc) - timedelta(hours=1)
    figures = {}

    key = create_key(table, f"bench-evals-{uuid.uuid4().hex[:6]}").plaintext
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        records = [{"request_id": uuid.uuid4().hex, "timestamp": at.isoformat(), "prompt": "Summarize the report.",
                    "output": "The report says...", "eval_scores": {"overall": (i % 100) / 100},
                    "metadata": {"user_cohort": "pro" if i % 3 else "free", "model": "m-1"}}
                   for i in range(start, min(n, start + BATCH))]
        _post(stack.api_url, key, "/v1/evals", {"records": records}, protobuf=False)
    figures["POST /v1/evals (records)"] = n / (time.perf_counter() - started)

    for name, inline in (("POST /v1/traces, evaluations on the spans", True), ("POST /v1/traces then /v1/logs", False)):
        key = create_key(table, f"bench-{'inline' if inline else 'split'}-{uuid.uuid4().hex[:6]}").plaintext
        started = time.perf_counter()
        for start in range(0, n, BATCH):
            spans = [_span(i, at, inline) for i in range(start, min(n, start + BATCH))]
            request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
            _post(stack.api_url, key, "/v1/traces", request.SerializeToString(), protobuf=True)
            if inline:
                continue
            logs = [LogRecord(trace_id=s.trace_id, span_id=s.span_id, event_name=EVENT,
                              attributes=_evaluation((i % 100) / 100)) for i, s in enumerate(spans)]
            export = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=logs)])])
            _post(stack.api_url, key, "/v1/logs", export.SerializeToString(), protobuf=True)
        figures[name] = n / (time.perf_counter() - started)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    with LocalStack() as stack:
        figures = run(stack, args.requests)
    base = figures["POST /v1/evals (records)"]
    print(f"{args.requests:,} requests, {BATCH} a call")
    for name, rate in figures.items():
        print(f"  {name}: {rate:,.0f} records/s ({rate / base:.2f}x the eval-log pipe)")


if __name__ == "__main__":
    main()
