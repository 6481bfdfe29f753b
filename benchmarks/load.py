"""Load through the local HTTP API with retries and concurrent duplicates, then reconciliation.

    .venv/bin/python benchmarks/load.py [--events 20000] [--clients 32] [--snapshot-seconds 30 1]

For each snapshot interval, starts its own local stack as `feedback-loop serve` runs it (the journal
on, fsynced before every answer, and state saved to a data directory every N seconds; the per-key
rate limit off: one key sends everything), sends the events from many client threads (80% singles,
20% batches of 10-50; 10% of requests sent again after their answer, 2% sent twice at the same
moment), resends 503s, and prints throughput, latency and the reconciliation of what was
acknowledged with what the table holds, with the number of snapshots taken during the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.local.stack import LocalStack
from feedback_loop.logic.keys import create_key

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.reliability.loadgen import make_events, reconcile, run_load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--snapshot-seconds", type=float, nargs="+", default=[30.0, 1.0])
    args = parser.parse_args()
    for interval in args.snapshot_seconds:
        with tempfile.TemporaryDirectory() as data_dir, LocalStack(
                parameters={"KeyRateLimitPerMinute": "0"}, max_concurrency=16, data_dir=data_dir, persist=True,
                snapshot_seconds=interval, log_level="ERROR") as stack:
            table = FeedbackTable(stack.table_name)
            key = create_key(table, "load").plaintext
            events = make_events(args.events, seed=1)
            result = run_load(stack.api_url, key, events, clients=args.clients, seed=2)
            began = time.perf_counter()
            outcome = reconcile(table, "load", stack.api_url, key, events, result)
            seconds = time.perf_counter() - began
            snapshots = stack.snapshots_taken
        print(json.dumps({"snapshot_seconds": interval, "snapshots_during_run": snapshots, "load": result.figures(),
                          "reconciliation": outcome, "reconciliation_seconds": round(seconds, 1)}, indent=2))


if __name__ == "__main__":
    main()
