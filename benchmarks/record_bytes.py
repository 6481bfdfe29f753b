"""Bytes per eval record, raw and gzip JSON Lines, for records made from real generated texts: what
Athena scans per record of a text table (docs/BENCHMARKS.md, the Athena cost estimate).

    .venv/bin/python benchmarks/record_bytes.py FILE [FILE ...]

Each FILE is a JSON list whose items have `source` and `system_output`, as the result files that
UniEval's authors published (maszhongming/UniEval: qags_cnndm_result.json, qags_xsum_result.json,
topical_chat_result.json). Each item becomes an eval record of the contract (docs/CONTRACTS.md):
the source as prompt, the system output as output, fixed scores and metadata.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path


def record(i: int, item: dict) -> dict:
    return {"request_id": f"req-{i:08d}", "timestamp": "2026-05-15T10:00:00.123456Z", "prompt": item["source"],
            "output": item["system_output"], "eval_scores": {"overall": 0.5, "coherence": 0.5},
            "metadata": {"user_cohort": "pro", "query_type": "summarize", "prompt_version": "v7",
                         "model": "m-2026-05"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    print(f"{'file':32s} {'records':>8s} {'raw B':>8s} {'gzip B':>8s} {'prompt+output':>14s}")
    for path in parser.parse_args().files:
        items = json.loads(path.read_text())
        lines = [json.dumps(record(i, item)) + "\n" for i, item in enumerate(items)]
        raw = "".join(lines).encode()
        texts = sum(len(json.dumps(item["source"])) + len(json.dumps(item["system_output"])) for item in items)
        n = len(items)
        print(f"{path.name:32s} {n:8d} {len(raw) / n:8.0f} {len(gzip.compress(raw)) / n:8.0f} "
              f"{texts / len(raw):14.0%}")


if __name__ == "__main__":
    main()
