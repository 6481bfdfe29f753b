"""Training data: the analysis's labelled.jsonl rows, read from SageMaker channels (standard library
only: the calibrator's job reads its channels with read_rows too, in an image without our dependencies)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Example:
    request_id: str
    prompt: str
    output: str
    label: int  # 1 good, 0 bad
    weight: float
    champion: float | None  # the evaluator in service: eval_scores.overall from the eval log
    timestamp: str


# the held-out figures each training job prints, one `validation:<name>=<value>;` line each, and the
# SageMaker metric definitions that read them (retraining/launch.py gives them to CreateTrainingJob)
FINETUNE_METRICS = ("auroc", "accuracy", "ece", "brier")
CALIBRATOR_METRICS = ("ece", "brier", "log_loss", "auroc")


def metric_definitions(names: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"Name": f"validation:{m}", "Regex": f"validation:{m}=([0-9.]+);"} for m in names]


def print_metrics(figures: dict[str, Any], names: tuple[str, ...]) -> None:
    """The held-out figures as the lines metric_definitions reads, those that have a value."""
    for name in names:
        if figures.get(name) is not None:
            print(f"validation:{name}={figures[name]:.6f};", flush=True)


def read_rows(folder: str | Path, skipped: Counter[str] | None = None) -> list[dict[str, Any]]:
    """Every JSON line of every *.jsonl file in a channel folder (as SageMaker lays channels out; a
    folder that is not there holds none). With `skipped`, a line that is not a JSON object is
    counted there by reason and left out; without, it raises."""
    rows = []
    for path in sorted(Path(folder).rglob("*.jsonl")):
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                if skipped is None:
                    rows.append(json.loads(line))
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    skipped["malformed_json"] += 1
                    continue
                if isinstance(row, dict):
                    rows.append(row)
                else:
                    skipped["not_an_object"] += 1
    return rows


def examples(rows: list[dict[str, Any]]) -> tuple[list[Example], dict[str, int]]:
    """Binary examples from labelled rows, with what was left out and why.

    - neutral labels (human score strictly between 0.25 and 0.75) carry no binary label: left out;
    - a request seen in several weeks keeps its latest row (its label may have changed since);
    - rows without text cannot be learnt from: left out.
    """
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = latest.get(row["request_id"])
        if held is None or row.get("timestamp", "") >= held.get("timestamp", ""):
            latest[row["request_id"]] = row
    dropped = {"duplicate_request": len(rows) - len(latest), "neutral": 0, "no_text": 0}
    kept = []
    for row in latest.values():
        if row.get("human_label") not in ("good", "bad"):
            dropped["neutral"] += 1
            continue
        if not isinstance(row.get("output"), str) or not row["output"].strip():
            dropped["no_text"] += 1
            continue
        kept.append(Example(
            request_id=row["request_id"], prompt=str(row.get("prompt") or ""), output=row["output"],
            label=int(row["human_label"] == "good"), weight=float(row.get("weight") or 1.0),
            champion=row.get("overall"), timestamp=str(row.get("timestamp", "")),
        ))
    kept.sort(key=lambda e: e.request_id)  # the same data gives the same model
    return kept, dropped
