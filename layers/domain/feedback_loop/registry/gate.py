"""The registry gate: challenger vs champion on the same held-out human labels.

The champion's scores are the ones the eval logs recorded for those requests: the evaluator that
was serving when they were made. Both are scored against the same labels, with the same functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from feedback_loop.analysis import stats

APPROVED, PENDING, REJECTED = "Approved", "PendingManualApproval", "Rejected"


@dataclass(frozen=True)
class GatePolicy:
    min_auroc_gain: float = 0.02  # the challenger must beat the champion by this much on AUROC
    max_ece_increase: float = 0.0  # and be no worse calibrated than this
    min_validation: int = 30  # held-out labels needed to decide at all


@dataclass(frozen=True)
class Scores:
    n: int
    auroc: float | None
    auroc_ci: tuple[float, float] | None
    ece: float | None
    brier: float | None


@dataclass(frozen=True)
class GateDecision:
    status: str
    reasons: list[str]
    challenger: Scores
    champion: Scores
    n: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(scores: np.ndarray, labels: np.ndarray) -> Scores:
    area = stats.auroc(scores, labels.astype(bool))
    calibration = stats.calibration(scores, labels)
    return Scores(len(labels), area.auroc, area.ci, calibration.ece, calibration.brier)


def gate(predictions: list[dict[str, Any]], policy: GatePolicy) -> GateDecision:
    """predictions: held-out rows with `label` (1 good, 0 bad), `challenger` and `champion` scores.
    Rows without a champion score are left out, so both are judged on exactly the same labels."""
    rows = [p for p in predictions if p.get("champion") is not None]
    labels = np.array([p["label"] for p in rows], int)
    challenger = score(np.array([p["challenger"] for p in rows], float), labels)
    champion = score(np.array([p["champion"] for p in rows], float), labels)
    decision = lambda status, *reasons: GateDecision(status, list(reasons), challenger, champion, len(rows))  # noqa: E731
    if len(rows) < policy.min_validation or challenger.auroc is None or champion.auroc is None:
        return decision(PENDING, f"{len(rows)} held-out labels with both scores: too few to decide "
                                 f"(at least {policy.min_validation}, both labels)")
    gain = challenger.auroc - champion.auroc
    ece_change = challenger.ece - champion.ece
    summary = (f"AUROC {challenger.auroc:.4f} vs champion {champion.auroc:.4f} ({gain:+.4f}); "
               f"ECE {challenger.ece:.4f} vs {champion.ece:.4f} ({ece_change:+.4f}) on {len(rows)} held-out labels")
    if gain <= 0:
        return decision(REJECTED, f"not better than the champion: {summary}")
    if gain < policy.min_auroc_gain:
        return decision(PENDING, f"better, but by less than the margin {policy.min_auroc_gain}: {summary}")
    if ece_change > policy.max_ece_increase:
        return decision(PENDING, f"better ranking but worse calibration: {summary}")
    return decision(APPROVED, f"beats the champion by the margin without worse calibration: {summary}")
