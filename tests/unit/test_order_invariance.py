"""Order and layout never change a figure: the same week's eval records and feedback events, their
lines shuffled, days split into several files of both formats and days merged into one file,
the feedback in several exports in another order, give the same report.json, every figure equal
to 1e-12 (floats summed in another order may differ in their last bits; nothing else may differ).
The Athena engine's side of this guard is in tests/integration/test_athena.py."""

from __future__ import annotations

import gzip
import json
import math
import random
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.model import AnalysisSettings
from feedback_loop.analysis.run import run_analysis
from feedback_loop.simulate import Scenario, simulate

SCENARIO = Scenario(requests=4000, seed=23)
# the system and group fields on: their bootstraps too must not depend on the order read
SETTINGS = AnalysisSettings(system_field="query_type", group_field="prompt_version")


def week() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records, events = simulate(SCENARIO)
    assert len({r["request_id"] for r in records}) == len(records)  # read twice, the first read wins: by order
    return records, events


def write_layout(records: list[dict[str, Any]], root: Path, seed: int | None) -> Path:
    """By day under dt= folders. seed None: one JSON Lines file a day, in time order. Otherwise the
    lines shuffled, each day cut into 1-3 files of JSON Lines, gzip JSON Lines or Parquet, and two
    days' records together in one file of the first day's folder (the reader reads partitions with a
    day of slack each side, so nothing moves out of reach)."""
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_day[record["timestamp"][:10]].append(record)
    days = sorted(by_day)
    rng = random.Random(seed)
    if seed is not None:
        first, second = days[2], days[3]
        by_day[first] += by_day.pop(second)
    for day, rows in by_day.items():
        folder = root / f"dt={day}"
        folder.mkdir(parents=True)
        if seed is None:
            (folder / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            continue
        rng.shuffle(rows)
        cuts = sorted(rng.sample(range(1, len(rows)), rng.randint(0, 2)))
        for n, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(rows)])):
            part, kind = rows[start:end], rng.choice(["jsonl", "jsonl.gz", "parquet"])
            if kind == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.Table.from_pylist(part), folder / f"part-{n}.parquet")
                continue
            text = "".join(json.dumps(r) + "\n" for r in part).encode()
            (folder / f"part-{n}.{kind}").write_bytes(gzip.compress(text) if kind.endswith("gz") else text)
    return root


def analyse(root: Path, records: list[dict[str, Any]], events: list[dict[str, Any]], seed: int | None) -> dict:
    logs = write_layout(records, root / "logs", seed)
    events = list(events)
    exports = [events]
    if seed is not None:
        random.Random(seed).shuffle(events)
        exports = [events[: len(events) // 3], events[len(events) // 3:]]
    feedback = FeedbackIndex()
    for n, part in enumerate(exports):
        path = root / f"feedback-{n}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in part))
        feedback.add_export_file(path)
    start = SCENARIO.start + timedelta(days=1)
    report = run_analysis("p", EvalLogSource(str(logs)), feedback, SCENARIO.changes(), start,
                          start + timedelta(days=7), SETTINGS).report
    report.pop("generated_at")
    return json.loads(json.dumps(report, default=str))


def differences(a: Any, b: Any, path: str = "report") -> list[str]:
    """Where two reports differ: floats beyond 1e-12 (relative past 1), anything else at all."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for key in a for d in differences(a[key], b[key], f"{path}.{key}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b) or abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b)):
            return []
        return [f"{path}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list, list]:
    records, events = week()
    return analyse(tmp_path_factory.mktemp("reference"), records, events, None), records, events


@pytest.mark.parametrize("seed", [1, 2])
def test_shuffled_split_and_merged_input_gives_the_same_report(reference, tmp_path: Path, seed: int) -> None:
    expected, records, events = reference
    assert expected["counts"]["requests_with_human_score"] > 150 and expected["impact"]
    meta = expected["meta_evaluation"]
    assert meta["system_level"]["systems"] >= 3 and meta["raters"]["requests_rated_twice"] > 20
    assert differences(expected, analyse(tmp_path, records, events, seed)) == []
