"""Ingestion figures: handler throughput, local HTTP latency, the cost of the rate limit or of
durability, cold import, bundle size.

    .venv/bin/python benchmarks/ingest.py [--compare rate-limit|durability] [--seconds 5]
                                          [--http-requests 1000] [--no-bundle]

The handlers are called in process (as API Gateway and Lambda would call them: the key authorizer,
then the API function) against the emulated DynamoDB over loopback HTTP, so their figures include
real storage round trips to the emulator. Each figure is measured on three local stacks one after
the other in the same run:
- `--compare rate-limit` (the default): the per-key rate limit off, exact (one table write per
  request, `KeyRateLimitBatch=1`) and batched (the default: one write per 1% of the limit, at most 50);
- `--compare durability`: in memory (nothing saved), with the journal but no fsync, and durable
  (`feedback-loop serve`: every write journaled and fsynced before it is answered).
Figures from the same run are comparable with each other; absolute numbers depend on the (shared,
noisy) machine.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.local.authorizer import authorize
from feedback_loop.local.runtime import LambdaContext, load_module
from feedback_loop.local.stack import LocalStack
from feedback_loop.logic.keys import create_key

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"numpy", "scipy", "sagemaker", "pandas", "torch", "transformers", "sklearn", "aws_xray_sdk"}


def proxy_event(method: str, path: str, key: str, body: object) -> dict:
    return {"resource": path, "path": path, "httpMethod": method,
            "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            "multiValueHeaders": {}, "queryStringParameters": None, "pathParameters": None,
            "requestContext": {"requestId": str(uuid.uuid4()), "stage": "prod", "resourcePath": path},
            "body": json.dumps(body), "isBase64Encoded": False}


def handler_throughput(stack: LocalStack, key: str, seconds: float) -> dict[str, float]:
    spec = next(f for f in stack.template.functions() if f.logical_id == "ApiFunction")
    handler = load_module(spec).lambda_handler
    authorizer = stack.functions["AuthorizerFunction"].invoke  # as the gateway runs it
    figures = {}
    for label, path, size in (("single", "/v1/feedback", 1), ("batch of 100", "/v1/feedback/batch", 100)):
        calls = events = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            items = [{"request_id": f"bench-{uuid.uuid4().hex[:8]}", "feedback_type": "explicit_rating",
                      "value": 1 + i % 5, "user_id": f"u{i}"} for i in range(size)]
            body = items[0] if size == 1 else {"events": items}
            context = LambdaContext("ApiFunction", timeout_seconds=spec.timeout)
            event = proxy_event("POST", path, key, body)
            decision = authorize(authorizer, event)  # API Gateway runs it first; on ALLOW it adds its context
            assert decision.outcome == "ALLOW", decision
            response = handler(event, context)
            assert response["statusCode"] in (201, 207), response["body"]
            if size > 1:  # every item stored, none left for a resend
                assert {r["status"] for r in json.loads(response["body"])["results"]} == {201}, response["body"]
            calls += 1
            events += size
        elapsed = time.perf_counter() - began
        figures[f"handler {label}: requests/s"] = calls / elapsed
        figures[f"handler {label}: events/s"] = events / elapsed
    return figures


def http_latency(stack: LocalStack, key: str, count: int) -> dict[str, float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    latencies = []
    for i in range(count):
        body = {"request_id": f"http-{i}", "feedback_type": "explicit_thumbs_up", "value": True}
        began = time.perf_counter()
        response = session.post(f"{stack.api_url}/v1/feedback", json=body, timeout=30)
        latencies.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 201
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"local HTTP POST /v1/feedback p50 ms": cuts[49], "local HTTP POST /v1/feedback p99 ms": cuts[98]}


def cold_import() -> tuple[dict[str, float], list[tuple[str, float]], list[str]]:
    """A fresh interpreter loading functions/api/app.py, as a cold start does (-X importtime), then
    answering its first requests: /v1/health, and /v1/openapi.json (the document is built then).

    Nothing but the function's own imports runs: not the CLI, not the local stack.
    """
    code = ("import importlib.util, os, sys, time\n"
            "os.environ.update(TABLE_NAME='t', AWS_DEFAULT_REGION='us-east-1')\n"
            "began = time.perf_counter()\n"
            "spec = importlib.util.spec_from_file_location('app', 'functions/api/app.py')\n"
            "module = importlib.util.module_from_spec(spec); sys.modules['app'] = module\n"
            "spec.loader.exec_module(module)\n"
            "imported = time.perf_counter() - began\n"
            "class Context:  # what Powertools reads of Lambda's context\n"
            "    function_name, memory_limit_in_mb, aws_request_id = 'ApiFunction', 512, 'r'\n"
            "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:ApiFunction'\n"
            "    def get_remaining_time_in_millis(self): return 28000\n"
            "def get(path):\n"
            "    event = {'resource': path, 'path': path, 'httpMethod': 'GET', 'headers': {},\n"
            "             'requestContext': {'requestId': 'r', 'stage': 'prod'}, 'body': None}\n"
            "    began = time.perf_counter()\n"
            "    assert module.lambda_handler(event, Context())['statusCode'] == 200\n"
            "    return time.perf_counter() - began\n"
            "health = get('/v1/health'); document = get('/v1/openapi.json'); again = get('/v1/openapi.json')\n"
            "print(imported, health, document, again)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n")
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    seconds_line, modules_line = result.stdout.strip().splitlines()[-2:]
    imported, health, document, again = (float(v) for v in seconds_line.split())
    cumulative: dict[str, float] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and "." not in match.group(2) and not match.group(2).startswith("_"):
            name = match.group(2)  # a package root: its cumulative time includes what it imports
            cumulative[name] = max(cumulative.get(name, 0), int(match.group(1)) / 1e6)
    top = sorted(cumulative.items(), key=lambda kv: -kv[1])[:12]
    timings = {"cold import of the API function s": imported, "its first GET /v1/health s": health,
               "its first GET /v1/openapi.json (builds the document) s": document,
               "the next GET /v1/openapi.json s": again}
    return timings, top, sorted(set(modules_line.split()) & HEAVY)


def bundle_size() -> dict[str, float]:
    """The API function's unzipped deployment, built as sam builds it (see bundle.py)."""
    from bundle import bundle_sizes

    parts = bundle_sizes()["ApiFunction"]
    return {f"API function {name} MB": mb for name, mb in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per handler measurement")
    parser.add_argument("--http-requests", type=int, default=1000)
    parser.add_argument("--no-bundle", action="store_true", help="skip the pip-based bundle size")
    parser.add_argument("--compare", choices=["rate-limit", "durability"], default="rate-limit")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="template parameter for every stack, e.g. KeyRateLimitPerMinute=600")
    args = parser.parse_args()

    common = dict(p.split("=", 1) for p in args.param)
    if args.compare == "rate-limit":  # (label, parameters, persist, fsync), as `serve` runs: durable
        stacks = [("limit off", {"KeyRateLimitPerMinute": "0"}, True, True),
                  ("exact", {"KeyRateLimitBatch": "1"}, True, True),
                  ("batched", {}, True, True)]
    else:
        stacks = [("in memory", {}, False, False), ("journal, no fsync", {}, True, False), ("durable", {}, True, True)]
    by_stack: dict[str, dict[str, float]] = {}
    for label, parameters, persist, fsync in stacks:
        with tempfile.TemporaryDirectory() as data_dir, LocalStack(
                parameters={**common, **parameters}, data_dir=data_dir, persist=persist,
                fsync=fsync, snapshot_seconds=3600) as stack:
            key = create_key(FeedbackTable(stack.table_name), "bench").plaintext
            by_stack[label] = {**handler_throughput(stack, key, args.seconds),
                               **http_latency(stack, key, args.http_requests)}
    labels = list(by_stack)
    width = max(len(k) for k in by_stack[labels[0]])
    ratio = f"{labels[-1]} / {labels[0]}"
    print(f"{'':<{width}}  " + "  ".join(f"{label:>17}" for label in labels) + f"  {ratio}")
    for name in by_stack[labels[0]]:
        values = [by_stack[label][name] for label in labels]
        print(f"{name:<{width}}  " + "  ".join(f"{v:17.2f}" for v in values) + f"  {values[-1] / values[0]:{len(ratio)}.2f}")

    figures: dict[str, float] = {}
    timings, top, heavy = cold_import()
    figures.update(timings)
    if not args.no_bundle:
        figures.update(bundle_size())
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:10.2f}")
    print("heaviest top-level imports at cold start (cumulative s):")
    for package, cost in top:
        print(f"  {package:<24} {cost:.3f}")
    print(f"numpy/scipy/SageMaker SDK/pandas/torch/X-Ray SDK imported: {heavy or 'none'}")


if __name__ == "__main__":
    main()
