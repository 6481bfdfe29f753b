"""Running the analysis end to end: sources in, report and datasets out (a folder or S3)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import TypeAdapter

from feedback_loop.analysis import trends
from feedback_loop.analysis.columnar import scan_files
from feedback_loop.analysis.model import Analysis, AnalysisSettings, change_sides, read_range
from feedback_loop.analysis.report import report
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.html import EXAMPLES, render_html
from feedback_loop.calibration.curves import CalibrationMap
from feedback_loop.models.changes import SEGMENT_TEXT, Change

REPORT_JSON = trends.REPORT_JSON
REPORT_HTML = "report.html"
DISAGREEMENTS = "disagreements.jsonl"
LABELLED = "labelled.jsonl"
TREND_JSON = trends.TREND_JSON
SPOOL_IN_MEMORY = 8 << 20  # a file bigger than this goes through /tmp on its way to S3

_changes = TypeAdapter(list[Change])


def load_changes(path: str | Path) -> list[Change]:
    """A JSON or YAML list of changes (the change contract; segments may also be written as text)."""
    text = Path(path).read_text()
    data = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
    return _changes.validate_python(data, context={SEGMENT_TEXT: True})


def run_analysis(project: str, eval_logs: EvalLogSource, feedback: FeedbackIndex, changes: list[Change],
                 since: datetime, until: datetime, settings: AnalysisSettings | None = None,
                 progress: Callable[[str], None] | None = None, memory_limit: str | None = None,
                 calibrator: tuple[CalibrationMap, str] | None = None) -> Analysis:
    """The analysis of one window; `memory_limit` (DuckDB's, such as '2GB') overrides
    columnar.default_memory_limit; `calibrator` (a map and its id) adds the `calibration` section,
    the map applied to every request of the pass."""
    settings = settings or AnalysisSettings()
    start, measured = read_range(since, until, changes, settings)
    skipped: Counter[str] = Counter()
    began = time.monotonic()

    def on_file(number: int, total: int, name: str) -> None:
        if progress:
            progress(f"[{number}/{total}] {name} ({time.monotonic() - began:.1f} s)")

    sides = change_sides(measured, since, until, settings)
    window = (since.timestamp(), until.timestamp())
    collected = scan_files(eval_logs, feedback, sides, start.timestamp(), until.timestamp(), window,
                           settings.read_fields, skipped, on_file, memory_limit=memory_limit,
                           threshold=settings.threshold, minimum=settings.min_segment_n,
                           calibration_map=calibrator[0] if calibrator else None)
    return report(project, collected, feedback, sides, since, until, settings, skipped, calibrator=calibrator)


CONTENT_TYPES = {REPORT_JSON: "application/json", REPORT_HTML: "text/html; charset=utf-8",
                 DISAGREEMENTS: "application/x-ndjson", LABELLED: "application/x-ndjson",
                 TREND_JSON: "application/json"}


def _json_lines(entries: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for entry in entries:
        yield orjson.dumps(entry) + b"\n"


def flagged_examples(analysis: Analysis) -> list[tuple[int, list[dict[str, Any]]]]:
    """Per flagged segment of miscalibration, its disagreements' count and the surest of them."""
    miscalibration = analysis.report["miscalibration"]
    return [analysis.datasets.examples(f["field"], f["value"], miscalibration["threshold"], EXAMPLES)
            for f in miscalibration["flagged_segments"]]


def outputs(analysis: Analysis) -> dict[str, Iterable[bytes]]:
    """The files of one analysis, by name, each as the chunks to write (the datasets made entry by
    entry as they are written)."""
    return {
        REPORT_JSON: [json.dumps(analysis.report, indent=2, default=str).encode()],
        REPORT_HTML: [render_html(analysis.report, analysis.datasets.scatter(), flagged_examples(analysis)).encode()],
        TREND_JSON: [trends.dumps(analysis.report)],
        DISAGREEMENTS: _json_lines(analysis.datasets.disagreements()),
        LABELLED: _json_lines(analysis.datasets.labelled()),
    }


def local_points(history: str | Path, skip: str | Path | None = None) -> list[dict[str, Any]]:
    """The points of earlier runs kept as folders of `history` (each with trend.json, or a
    report.json written before it), `skip` (this run's folder) left out; unreadable ones skipped."""
    points: list[dict[str, Any]] = []
    if not Path(history).is_dir():
        return points
    for folder in sorted(p for p in Path(history).iterdir() if p.is_dir()):
        if skip is not None and folder.resolve() == Path(skip).resolve():
            continue

        def read(name: str, folder: Path = folder) -> str | None:
            return (folder / name).read_text() if (folder / name).is_file() else None

        try:
            found = trends.load_point(folder.name, read)
        except (ValueError, KeyError, TypeError):
            continue
        if found is not None:
            points.append(found)
    return points


def write_local(analysis: Analysis, folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, chunks in outputs(analysis).items():
        with open(folder / name, "wb") as out:
            out.writelines(chunks)
        written[name] = folder / name
    return written


def write_s3(analysis: Analysis, s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """Each file spooled to a temporary file (in memory while small), then one PUT."""
    written = {}
    for name, chunks in outputs(analysis).items():
        key = f"{prefix.rstrip('/')}/{name}"
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            spool.writelines(chunks)
            spool.seek(0)
            s3.put_object(Bucket=bucket, Key=key, Body=spool, ContentType=CONTENT_TYPES[name])
        written[name] = f"s3://{bucket}/{key}"
    return written


def printable(text: str) -> str:
    """Text for a terminal: control characters (an ANSI escape in a file or S3 key name) shown escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def print_progress(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)
