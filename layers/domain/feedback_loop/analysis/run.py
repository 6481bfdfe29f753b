"""Running the analysis end to end: sources in, report and datasets out (a folder or S3)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import TypeAdapter

from feedback_loop.analysis.columnar import scan_files
from feedback_loop.analysis.model import Analysis, AnalysisSettings, change_sides, read_range
from feedback_loop.analysis.report import report
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.html import render_html
from feedback_loop.models.changes import SEGMENT_TEXT, Change

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
DISAGREEMENTS = "disagreements.jsonl"
LABELLED = "labelled.jsonl"

_changes = TypeAdapter(list[Change])


def load_changes(path: str | Path) -> list[Change]:
    """A JSON or YAML list of changes (the change contract; segments may also be written as text)."""
    text = Path(path).read_text()
    data = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
    return _changes.validate_python(data, context={SEGMENT_TEXT: True})


def run_analysis(project: str, eval_logs: EvalLogSource, feedback: FeedbackIndex, changes: list[Change],
                 since: datetime, until: datetime, settings: AnalysisSettings | None = None,
                 progress: Callable[[str], None] | None = None) -> Analysis:
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
                           settings.segment_fields, skipped, on_file)
    return report(project, collected, feedback, sides, since, until, settings, skipped)


def outputs(analysis: Analysis) -> dict[str, bytes]:
    """The files of one analysis, by name."""
    return {
        REPORT_JSON: json.dumps(analysis.report, indent=2, default=str).encode(),
        REPORT_HTML: render_html(analysis.report, [(e["overall"], e["human_score"]) for e in analysis.labelled]).encode(),
        DISAGREEMENTS: b"".join(orjson.dumps(e) + b"\n" for e in analysis.disagreements),
        LABELLED: b"".join(orjson.dumps(e) + b"\n" for e in analysis.labelled),
    }


def write_local(analysis: Analysis, folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, content in outputs(analysis).items():
        (folder / name).write_bytes(content)
        written[name] = folder / name
    return written


def write_s3(analysis: Analysis, s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    written = {}
    types = {REPORT_JSON: "application/json", REPORT_HTML: "text/html; charset=utf-8"}
    for name, content in outputs(analysis).items():
        key = f"{prefix.rstrip('/')}/{name}"
        s3.put_object(Bucket=bucket, Key=key, Body=content,
                      ContentType=types.get(name, "application/x-ndjson"))
        written[name] = f"s3://{bucket}/{key}"
    return written


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
