"""Helpers that lay out eval logs and feedback exports the way apps and the API write them."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def write_eval_logs(records: list[dict[str, Any]], root: Path, fmt: str = "jsonl.gz") -> Path:
    """`root/dt=YYYY-MM-DD/part-0.<fmt>`, partitioned by the records' UTC date."""
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_day[str(record.get("timestamp", "0000-00-00"))[:10]].append(record)
    for day, rows in by_day.items():
        folder = root / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")
            continue
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if fmt == "jsonl.gz":
            with gzip.open(folder / "part-0.jsonl.gz", "wt") as out:
                out.write(text)
        else:
            (folder / "part-0.jsonl").write_text(text)
    return root


def write_feedback(events: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

