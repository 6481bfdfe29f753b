"""Bytes per eval record, raw and gzip JSON Lines and Parquet, for records made from real generated
texts: what Athena scans per record (docs/BENCHMARKS.md, the Athena cost estimate). From a text
table it reads every byte; from Parquet (the eval_logs_parquet table's columns, snappy, as
Firehose writes them) only the columns a statement needs: all but prompt and output, except the
statement of the labelled rows.

    .venv/bin/python benchmarks/record_bytes.py FILE [FILE ...]

Each FILE is a JSON list whose items have `source` and `system_output`, as the result files that
UniEval's authors published (maszhongming/UniEval: qags_cnndm_result.json, qags_xsum_result.json,
topical_chat_result.json). Each item becomes an eval record of the contract (docs/CONTRACTS.md):
the source as prompt, the system output as output, its own UUID, time and scores, fixed metadata.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path


def record(i: int, item: dict) -> dict:
    return {"request_id": f"req-{i:08d}", "timestamp": "2026-05-15T10:00:00.123456Z", "prompt": item["source"],
            "output": item["system_output"], "eval_scores": {"overall": 0.5, "coherence": 0.5},
            "metadata": {"user_cohort": "pro", "query_type": "summarize", "prompt_version": "v7",
                         "model": "m-2026-05"}}


def varied(i: int, item: dict) -> dict:
    """A record as traffic writes them: its own id (a UUID), time and scores."""
    rng = random.Random(i)
    moment = datetime(2026, 5, 15, tzinfo=timezone.utc) + timedelta(seconds=i * 37.3 + rng.random())
    return {**record(i, item), "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "eval_scores": {"overall": rng.random(), "coherence": rng.random()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    print(f"{'file':32s} {'records':>8s} {'raw B':>8s} {'gzip B':>8s} {'prompt+output':>14s} "
          f"{'parquet B':>10s} {'w/o texts B':>12s}")
    for path in parser.parse_args().files:
        items = json.loads(path.read_text())
        records = [varied(i, item) for i, item in enumerate(items)]
        lines = [json.dumps(r) + "\n" for r in records]
        raw = "".join(lines).encode()
        texts = sum(len(json.dumps(item["source"])) + len(json.dumps(item["system_output"])) for item in items)
        n = len(items)
        columns = _parquet_column_bytes(records)
        small = sum(size for name, size in columns.items() if name not in ("prompt", "output"))
        print(f"{path.name:32s} {n:8d} {len(raw) / n:8.0f} {len(gzip.compress(raw)) / n:8.0f} "
              f"{texts / len(raw):14.0%} {sum(columns.values()) / n:10.0f} {small / n:12.1f}")


def _parquet_column_bytes(records: list[dict]) -> dict[str, int]:
    """The compressed bytes of each column of the records as one Parquet file of the table's schema."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("request_id", pa.string()), ("timestamp", pa.string()), ("prompt", pa.string()),
                        ("output", pa.string()), ("eval_scores", pa.map_(pa.string(), pa.float64())),
                        ("metadata", pa.map_(pa.string(), pa.string()))])
    rows = [{**r, "eval_scores": list(r["eval_scores"].items()), "metadata": list(r["metadata"].items())}
            for r in records]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer, compression="snappy")
    meta = pq.ParquetFile(io.BytesIO(buffer.getvalue())).metadata
    sizes: dict[str, int] = {}
    for group in range(meta.num_row_groups):
        for column in range(meta.num_columns):
            chunk = meta.row_group(group).column(column)
            name = chunk.path_in_schema.split(".")[0]
            sizes[name] = sizes.get(name, 0) + chunk.total_compressed_size
    return sizes


if __name__ == "__main__":
    main()
