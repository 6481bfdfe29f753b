"""The weekly analysis reading many small eval-log objects from S3, as the eval-log stream writes them
(one object per partition and buffer interval): with and without the prefetch of
`EvalLogSource.prefetching`, on one local stack, each S3 call given the same added latency.

    .venv/bin/python benchmarks/s3_reads.py [--files 500] [--records 5000] [--latency-ms 30]

The emulator answers in about a millisecond; S3 takes tens: `--latency-ms` is added before every
S3 call (botocore's before-send hook), so the figures show what the overlap of downloads buys where
a GET waits on the network. Side by side in one run; the reports must be equal.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from datetime import timedelta

import boto3

from feedback_loop.analysis import evallogs
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis
from feedback_loop.local.stack import LocalStack
from feedback_loop.simulate import Scenario, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=30)
    args = parser.parse_args()
    scenario = Scenario(requests=args.records, seed=3, days=7)
    records, events = simulate(scenario)
    with LocalStack() as stack:
        s3 = boto3.client("s3")
        per_file = max(1, len(records) // args.files)
        for number, start in enumerate(range(0, len(records), per_file)):
            chunk = records[start:start + per_file]
            body = gzip.compress("".join(json.dumps(r) + "\n" for r in chunk).encode())
            s3.put_object(Bucket=stack.bucket, Body=body,
                          Key=f"eval-logs/bench/dt={chunk[0]['timestamp'][:10]}/part-{number:05d}.jsonl.gz")
        feedback = FeedbackIndex()
        feedback.add_export_lines(json.dumps(e).encode() for e in events)
        reader = boto3.client("s3")
        reader.meta.events.register_first("before-send.s3", lambda **_: time.sleep(args.latency_ms / 1000))
        figures, reports = {}, {}
        for name, limit in (("one at a time", 0), ("prefetch", evallogs.PREFETCH_MAX_BYTES)):
            evallogs.PREFETCH_MAX_BYTES = limit
            started = time.perf_counter()
            result = run_analysis("bench", EvalLogSource(f"s3://{stack.bucket}/eval-logs/bench/", reader), feedback,
                                  [], scenario.start, scenario.end + timedelta(days=1))
            figures[name] = time.perf_counter() - started
            reports[name] = {k: v for k, v in result.report.items() if k not in ("generated_at", "runtime")}
    assert reports["one at a time"] == reports["prefetch"], "the reports differ"
    files = len(range(0, len(records), per_file))
    print(f"{files} objects, {len(records):,} records, {args.latency_ms:g} ms added to each S3 call")
    for name, seconds in figures.items():
        print(f"  {name}: {seconds:.1f} s ({figures['one at a time'] / seconds:.1f}x)")


if __name__ == "__main__":
    main()
