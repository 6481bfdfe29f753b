"""Eval logs (ARCHITECTURE.md, "Eval log record"), read as a stream from a folder or from S3.

Files are JSON Lines, gzip or not, or Parquet, under `dt=YYYY-MM-DD/` partitions; partitions
outside the window are not opened. Every record that cannot be used is counted by reason and
skipped; a file that breaks off (a truncated gzip) keeps the lines read before the break.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_BATCH_ROWS = 16_384


@dataclass(slots=True)
class EvalRecord:
    request_id: str
    at: float  # epoch seconds, UTC
    overall: float
    raw: dict[str, Any]  # the whole record: prompt, output, metadata and unknown fields


def to_epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_record(raw: Any, skipped: Counter[str]) -> EvalRecord | None:
    """The record, or None with the reason counted in `skipped`."""
    if not isinstance(raw, dict):
        skipped["not_an_object"] += 1
        return None
    request_id = raw.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        skipped["missing_request_id"] += 1
        return None
    at = to_epoch(raw.get("timestamp"))
    if at is None:
        skipped["bad_timestamp"] += 1
        return None
    scores = raw.get("eval_scores")
    overall = scores.get("overall") if isinstance(scores, dict) else None
    if isinstance(overall, bool) or not isinstance(overall, (int, float)):
        skipped["missing_overall_score"] += 1
        return None
    if not (0.0 <= overall <= 1.0) or math.isnan(overall):
        skipped["overall_score_out_of_range"] += 1
        return None
    return EvalRecord(request_id, at, float(overall), raw)


def _json_lines(stream: Iterable[bytes], skipped: Counter[str]) -> Iterator[Any]:
    try:
        for line in stream:
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                skipped["invalid_json"] += 1
    except (EOFError, OSError, zlib.error):  # gzip that breaks off, or is not gzip at all
        skipped["corrupt_file"] += 1


def _parquet_rows(path: str | Path, skipped: Counter[str]) -> Iterator[Any]:
    """Rows of a Parquet file as dicts (nested structs as dicts), streamed in batches by DuckDB,
    which fits the function's bundle where pyarrow would not."""
    import duckdb

    try:
        with duckdb.connect() as connection:
            cursor = connection.execute("SELECT * FROM read_parquet(?)", [str(path)])
            names = [column[0] for column in cursor.description]
            while batch := cursor.fetchmany(PARQUET_BATCH_ROWS):
                for row in batch:
                    yield dict(zip(names, row))
    except duckdb.Error:  # a damaged or truncated file
        skipped["corrupt_file"] += 1


def partition_day(name: str) -> date | None:
    match = _PARTITION.search(name)
    return date.fromisoformat(match.group(1)) if match else None


def in_days(name: str, first: date, last: date) -> bool:
    """Partition pruning, with a day of slack each side for writers that partition by local date."""
    day = partition_day(name)
    return day is None or first - timedelta(days=1) <= day <= last + timedelta(days=1)


@dataclass
class EvalLogSource:
    """Where eval logs are: a local folder, or s3://bucket/prefix (e.g. eval-logs/<project>/)."""

    location: str
    s3_client: Any = None

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def files(self, since: datetime, until: datetime) -> list[str]:
        first, last = since.astimezone(timezone.utc).date(), until.astimezone(timezone.utc).date()
        names = self._s3_keys() if self.is_s3 else [str(p) for p in sorted(Path(self.location).rglob("*"))
                                                      if p.is_file()]
        readable = [n for n in names if n.endswith(JSON_SUFFIXES + PARQUET_SUFFIXES)]
        return [n for n in readable if in_days(n, first, last)]

    def _s3_keys(self) -> list[str]:
        bucket, _, prefix = self.location.removeprefix("s3://").partition("/")
        paginator = self.s3_client.get_paginator("list_objects_v2")
        return sorted(f"s3://{bucket}/{item['Key']}"
                      for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                      for item in page.get("Contents", []))

    def rows(self, name: str, skipped: Counter[str]) -> Iterator[Any]:
        """A file's records as parsed values, the bad ones counted in `skipped` and left out."""
        if name.endswith(PARQUET_SUFFIXES):
            with self.local_copy(name) as path:  # Parquet needs random access
                yield from _parquet_rows(path, skipped)
            return
        with self._lines(name) as lines:
            yield from _json_lines(lines, skipped)

    @contextlib.contextmanager
    def local_copy(self, name: str) -> Iterator[str]:
        """The file on local disk: itself, or an S3 object downloaded to a temporary file (deleted after)."""
        if not self.is_s3:
            yield name
            return
        bucket, _, key = name.removeprefix("s3://").partition("/")
        suffix = "".join(re.findall(r"\.[A-Za-z0-9]+", key.rpartition("/")[2])[-2:])  # .jsonl.gz, .parquet
        with tempfile.NamedTemporaryFile(suffix=suffix) as local:
            self.s3_client.download_fileobj(bucket, key, local)
            local.flush()
            yield local.name

    def _lines(self, name: str) -> Any:
        """A context manager over the file's lines, decompressed as it streams."""
        if not self.is_s3:
            return gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")
        bucket, _, key = name.removeprefix("s3://").partition("/")
        body = self.s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        if name.endswith(".gz"):
            return gzip.GzipFile(fileobj=body)
        return contextlib.closing(_LineStream(body))

    def records(self, since: datetime, until: datetime, skipped: Counter[str],
                progress: Callable[[int, int, str], None] | None = None) -> Iterator[EvalRecord]:
        """Valid records with since <= timestamp < until. Nothing is kept per record, so memory
        does not grow with the logs (repeated request_ids are the caller's to notice)."""
        low, high = since.timestamp(), until.timestamp()
        files = self.files(since, until)
        for number, name in enumerate(files, 1):
            if progress:
                progress(number, len(files), name)
            for raw in self.rows(name, skipped):
                record = parse_record(raw, skipped)
                if record is None:
                    continue
                if not low <= record.at < high:
                    skipped["outside_window"] += 1
                    continue
                yield record


class _LineStream:
    """An S3 body as an iterable of lines (botocore's own line splitting), closable."""

    def __init__(self, body: Any):
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        return self.body.iter_lines(chunk_size=1 << 16, keepends=True)

    def close(self) -> None:
        self.body.close()
