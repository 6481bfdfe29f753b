"""The columnar pass keeps the order read when DuckDB reads in parallel: with several files (JSON
Lines, or Parquet of one schema) in one statement and more rows than one row group per file, the
labelled rows come back in file and line order, and of a request read twice the first record wins.
A pass past DuckDB's memory limit stops and says so."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from feedback_loop.analysis.columnar import scan_files
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex

from ..analysis_data import write_eval_logs

SINCE = datetime(2026, 5, 11, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(days=7)
PER_DAY = 130_000  # more than one of DuckDB's row groups (122,880 rows) per file


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_labelled_rows_come_back_in_the_order_read(tmp_path: Path, fmt: str) -> None:
    records, labelled = [], []
    for day in range(3):
        for i in range(PER_DAY):
            at = SINCE + timedelta(days=day, seconds=i * 86400 / PER_DAY)
            request_id = f"d{day}-{i}"
            output = "plain"
            if i in (5, PER_DAY - 7) and day < 2:  # one request read four times: first in day 0
                request_id, output = "twice", f"day {day} line {i}"
            records.append({"request_id": request_id, "timestamp": at.isoformat(), "output": output,
                            "eval_scores": {"overall": (i % 100) / 100}})
            if i % 97 == 3:
                labelled.append(request_id)
    logs = write_eval_logs(records, tmp_path / "logs", fmt=fmt)
    feedback = FeedbackIndex()
    feedback.add_export_lines([json.dumps({"request_id": r, "feedback_type": "explicit_rating", "value": 1 + n % 5,
                                           "timestamp": (UNTIL - timedelta(hours=1)).isoformat()}).encode()
                               for n, r in enumerate(["twice", *reversed(labelled)])])
    skipped: Counter[str] = Counter()
    collected = scan_files(EvalLogSource(str(logs)), feedback, [], SINCE.timestamp(), UNTIL.timestamp(),
                           (SINCE.timestamp(), UNTIL.timestamp()), (), skipped)
    read = list(collected.rows.request_id)
    voted = {*labelled, "twice"}
    expected = list(dict.fromkeys(r["request_id"] for r in records if r["request_id"] in voted))
    assert len(expected) > 4000 and read == expected
    assert json.loads(collected.rows.output[read.index("twice")]) == "day 0 line 5"
    assert skipped["duplicate_request_id"] == 3
    assert collected.read == 3 * PER_DAY


def test_a_pass_past_its_memory_limit_stops_and_says_so(tmp_path: Path) -> None:
    """DuckDB running out of its memory limit is not a bad file: the pass stops with an error that
    names the limit and what to raise, and no file is read again line by line as if it were damaged."""
    records = [{"request_id": f"r{i}", "timestamp": (SINCE + timedelta(minutes=i)).isoformat(),
                "eval_scores": {"overall": 0.5}} for i in range(50)]
    logs = write_eval_logs(records, tmp_path / "logs")
    feedback = FeedbackIndex()
    feedback.add_export_lines([json.dumps({"request_id": "r1", "feedback_type": "explicit_thumbs_up", "value": True,
                                           "timestamp": SINCE.isoformat()}).encode()])
    skipped: Counter[str] = Counter()
    with pytest.raises(MemoryError, match="memory limit of 16MB.*--memory-limit.*AnalysisMemorySize"):
        scan_files(EvalLogSource(str(logs)), feedback, [], SINCE.timestamp(), UNTIL.timestamp(),
                   (SINCE.timestamp(), UNTIL.timestamp()), (), skipped, memory_limit="16MB")
    assert not skipped
    collected = scan_files(EvalLogSource(str(logs)), FeedbackIndex(), [], SINCE.timestamp(), UNTIL.timestamp(),
                           (SINCE.timestamp(), UNTIL.timestamp()), (), skipped, memory_limit="128MB")
    assert collected.read == 50 and not skipped
