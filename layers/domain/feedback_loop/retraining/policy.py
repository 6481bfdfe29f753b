"""When to retrain the evaluator: a pure decision from the analysis's key figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class RetrainPolicy:
    min_new_labels: int = 200  # binary human labels in the accumulation window
    max_disagreement_rate: float = 0.2  # retrain when the evaluator disagrees with users more than this
    min_spearman: float = 0.5  # or when it correlates with them less than this
    cadence: timedelta = timedelta(days=7)  # at most one training per cadence


@dataclass(frozen=True)
class Decision:
    launch: bool
    reasons: list[str] = field(default_factory=list)


def decide(figures: dict[str, Any], labels: int, last_trained: datetime | None, now: datetime,
           policy: RetrainPolicy, force: bool = False) -> Decision:
    """Launch when there are enough labels, the evaluator is off (disagreement or correlation past
    the thresholds) and the cadence allows; `force` skips the last two, never the first."""
    if labels < policy.min_new_labels:
        return Decision(False, [f"only {labels} binary human labels, {policy.min_new_labels} needed"])
    if force:
        return Decision(True, ["requested"])
    if last_trained is not None and now - last_trained < policy.cadence:
        ago = timedelta(seconds=round((now - last_trained).total_seconds()))
        return Decision(False, [f"trained {ago} ago; the cadence is {policy.cadence}"])
    reasons = []
    rate, spearman = figures.get("disagreement_rate"), figures.get("spearman")
    if rate is not None and rate > policy.max_disagreement_rate:
        reasons.append(f"disagreement rate {rate:.3f} > {policy.max_disagreement_rate}")
    if spearman is not None and spearman < policy.min_spearman:
        reasons.append(f"spearman {spearman:.3f} < {policy.min_spearman}")
    if figures.get("flagged_segments"):
        reasons.append(f"{len(figures['flagged_segments'])} miscalibrated segment(s)")
    return Decision(bool(reasons), reasons or ["the evaluator agrees with users well enough"])
