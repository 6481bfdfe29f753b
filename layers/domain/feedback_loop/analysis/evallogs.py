"""Eval logs (ARCHITECTURE.md, "Eval log record") in a folder or in S3: the files of a window, and
a file's lines read in Python where DuckDB refuses the file (analysis/columnar.py checks them).

Files are JSON Lines, gzip or not, or Parquet, under `dt=YYYY-MM-DD/` partitions; partitions
outside the window are not opened. A file that breaks off (a truncated gzip) keeps the lines read
before the break.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import tempfile
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_BATCH_ROWS = 16_384


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
            # the file's own columns: not a dt= folder's value as a column
            cursor = connection.execute("SELECT * FROM read_parquet(?, hive_partitioning = false)", [str(path)])
            names = [column[0] for column in cursor.description]
            while batch := cursor.fetchmany(PARQUET_BATCH_ROWS):
                for row in batch:
                    yield dict(zip(names, row))
    except duckdb.Error:  # a damaged or truncated file
        skipped["corrupt_file"] += 1


def partition_day(name: str) -> date | None:
    match = _PARTITION.search(name)
    return date.fromisoformat(match.group(1)) if match else None


def partition_range(first: date, last: date) -> tuple[date, date]:
    """The partitions read for the days first to last: a day of slack each side, for writers that
    partition by local date."""
    return first - timedelta(days=1), last + timedelta(days=1)


def in_days(name: str, first: date, last: date) -> bool:
    """Partition pruning (partition_range)."""
    day = partition_day(name)
    low, high = partition_range(first, last)
    return day is None or low <= day <= high


PREFETCH_FILES = 8  # S3 files downloaded ahead of the one being loaded, at once
PREFETCH_MAX_BYTES = 16 * 1024 * 1024  # larger files are downloaded in their turn (the temporary disk)


@dataclass
class EvalLogSource:
    """Where eval logs are: a local folder, or s3://bucket/prefix (e.g. eval-logs/<project>/)."""

    location: str
    s3_client: Any = None
    _sizes: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _ahead: dict[str, Future[str]] = field(default_factory=dict, repr=False, compare=False)
    _queue: deque[str] = field(default_factory=deque, repr=False, compare=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False, compare=False)

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
        listed = {f"s3://{bucket}/{item['Key']}": item["Size"]
                  for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for item in page.get("Contents", [])}
        self._sizes.update(listed)
        return sorted(listed)

    @contextlib.contextmanager
    def prefetching(self, names: list[str]) -> Iterator[None]:
        """While open, S3 files of `names` (in that order, as they will be asked for) are downloaded
        ahead of their turn, PREFETCH_FILES at a time, those up to PREFETCH_MAX_BYTES (as listed):
        one GET's latency at a time becomes eight. local_copy hands a downloaded file over; what was
        not asked for is deleted at the end. A download's error comes out where the file is asked for,
        as it would without prefetching."""
        small = [n for n in names if 0 < self._sizes.get(n, PREFETCH_MAX_BYTES + 1) <= PREFETCH_MAX_BYTES]
        if not self.is_s3 or len(small) < 2:
            yield
            return
        self._pool = ThreadPoolExecutor(max_workers=PREFETCH_FILES, thread_name_prefix="eval-log-prefetch")
        self._queue = deque(small)
        self._top_up()
        try:
            yield
        finally:
            self._queue.clear()
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)
            for future in self._ahead.values():
                if future.done() and not future.cancelled() and future.exception() is None:
                    os.unlink(future.result())
            self._ahead.clear()

    def _top_up(self) -> None:
        while self._pool is not None and self._queue and len(self._ahead) < PREFETCH_FILES:
            name = self._queue.popleft()
            self._ahead[name] = self._pool.submit(self._download, name)

    def _download(self, name: str) -> str:
        """The S3 object in a temporary file of the same suffixes (the caller deletes it)."""
        bucket, _, key = name.removeprefix("s3://").partition("/")
        suffix = "".join(re.findall(r"\.[A-Za-z0-9]+", key.rpartition("/")[2])[-2:])  # .jsonl.gz, .parquet
        handle, path = tempfile.mkstemp(suffix=suffix)
        try:
            with os.fdopen(handle, "wb") as local:
                self.s3_client.download_fileobj(bucket, key, local)
        except BaseException:
            os.unlink(path)
            raise
        return path

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
        future = self._ahead.pop(name, None)
        self._top_up()
        path = future.result() if future is not None else self._download(name)
        try:
            yield path
        finally:
            os.unlink(path)

    def _lines(self, name: str) -> Any:
        """A context manager over the file's lines, decompressed as it streams."""
        if not self.is_s3:
            return gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")
        bucket, _, key = name.removeprefix("s3://").partition("/")
        body = self.s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        if name.endswith(".gz"):
            return gzip.GzipFile(fileobj=body)
        return contextlib.closing(_LineStream(body))


class _LineStream:
    """An S3 body as an iterable of lines (botocore's own line splitting), closable."""

    def __init__(self, body: Any):
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        return self.body.iter_lines(chunk_size=1 << 16, keepends=True)

    def close(self) -> None:
        self.body.close()
