"""The embedded engine on eval records of a realistic size: how long a pass takes and how much
memory it needs per GiB of gzip JSON Lines, which is what AthenaThresholdBytes counts
(docs/DEPLOY.md, docs/BENCHMARKS.md).

    .venv/bin/python benchmarks/threshold.py FILE --records 300000 [--memory-mb 3008]

FILE is a JSON list of items with `source` and `system_output` (UniEval's published result files,
as benchmarks/record_bytes.py reads them); each record takes the next item's texts in turn, with
its own request_id, a timestamp spread over 7 days (one gzip file per day), scores and cohort. 5%
of requests get a thumb. The pass runs in this process as the analysis function runs it, with
DuckDB's limit at half of --memory-mb as in Lambda.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_bytes import record  # noqa: E402  (the same records as the cost estimate)


def write(items: list[dict], n: int, folder: Path, until: datetime) -> tuple[int, Path]:
    rng = random.Random(7)
    since = until - timedelta(days=7)
    files: dict[str, gzip.GzipFile] = {}
    feedback = (folder / "feedback.jsonl").open("w")
    for i in range(n):
        moment = since + timedelta(seconds=(i + 0.5) * 7 * 86400 / n)
        entry = record(i, items[i % len(items)])
        entry.update(timestamp=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), eval_scores={"overall": rng.random()})
        entry["metadata"]["user_cohort"] = rng.choice(["free", "pro", "team"])
        day = moment.strftime("%Y-%m-%d")
        if day not in files:
            (folder / "logs" / f"dt={day}").mkdir(parents=True)
            files[day] = gzip.open(folder / "logs" / f"dt={day}" / "app.jsonl.gz", "wt", compresslevel=6)
        files[day].write(json.dumps(entry) + "\n")
        if rng.random() < 0.05:
            feedback.write(json.dumps({"request_id": entry["request_id"], "event_id": f"e{i}", "user_id": f"u{i}",
                                       "timestamp": entry["timestamp"], "user_cohort": entry["metadata"]["user_cohort"],
                                       "feedback_type": rng.choice(["explicit_thumbs_up", "explicit_thumbs_down"]),
                                       "value": True}) + "\n")
    for handle in files.values():
        handle.close()
    feedback.close()
    return sum(p.stat().st_size for p in (folder / "logs").rglob("*.gz")), folder / "feedback.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--memory-mb", type=int, default=3008)
    args = parser.parse_args()
    os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(args.memory_mb)  # DuckDB gets half, as in Lambda
    from feedback_loop.analysis.evallogs import EvalLogSource
    from feedback_loop.analysis.feedback import FeedbackIndex
    from feedback_loop.analysis.run import run_analysis

    items = json.loads(args.file.read_text())
    until = datetime(2026, 11, 23, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory(prefix="threshold-") as folder:
        size, feedback_file = write(items, args.records, Path(folder), until)
        began = time.monotonic()
        feedback = FeedbackIndex()
        feedback.add_export_file(feedback_file)
        analysis = run_analysis("bench", EvalLogSource(str(Path(folder) / "logs")), feedback, [],
                                until - timedelta(days=7), until)
        seconds = time.monotonic() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gib = size / (1 << 30)
    counts = analysis.report["counts"]
    print(f"records {args.records:,}  gzip {size / 1e6:,.0f} MB ({size / args.records:.0f} B/record)  "
          f"read {counts['eval_records']:,}  labelled {counts['requests_with_human_score']:,}  "
          f"skipped {counts['skipped_by_reason']}")
    print(f"pass {seconds:.1f} s  peak RSS {peak:,.0f} MB  ->  {seconds / gib:.0f} s per GiB of gzip "
          f"(memory {args.memory_mb} MB, DuckDB {args.memory_mb // 2} MB)")


if __name__ == "__main__":
    main()
