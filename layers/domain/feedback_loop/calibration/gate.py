"""The calibrator's own gate and its trust-or-escalate thresholds (numpy, scipy).

A monotone map barely moves AUROC, so the fine-tuned challenger's gate (AUROC gain) cannot judge
it. A calibrator is judged on held-out labels collected after its training labels (time_split):

- approved when the paired-bootstrap interval of its log-loss improvement over the champion (the
  raw score, or the calibrator in service) lies above 0, its ECE is not worse overall nor in any
  segment value with at least `segment_min` held-out labels, its AUROC is not lower than the
  champion's by more than `max_auroc_drop`, and there are at least `min_held_out` labels;
- rejected when it is worse: the interval lies below 0, its ECE is worse, or its AUROC dropped;
- left pending for a person otherwise (too few labels, or an interval that holds 0).

Trust or escalate (Jung et al., ICLR 2025): from the calibrated probability p of a request, the
judge's verdict is good when p >= 0.5 and its confidence is max(p, 1 - p). Over candidate
thresholds from the most confident down, fixed-sequence testing: at each threshold, the held-out
requests at least that confident and the share whose verdict disagrees with the users; the
threshold passes when the Clopper-Pearson upper bound of that share at level 1 - delta is at most
alpha; the first that fails ends the sequence. The lowest passing threshold is the one returned:
with probability at least 1 - delta, the requests the judge decides alone (confidence at or above
it) agree with users at a rate of at least 1 - alpha. The others need a person (`needs_review`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from feedback_loop.analysis import stats
from feedback_loop.calibration import fit

APPROVED, PENDING, REJECTED = "Approved", "PendingManualApproval", "Rejected"


@dataclass(frozen=True)
class CalibratorPolicy:
    min_held_out: int = 200  # held-out binary labels needed to decide at all
    max_auroc_drop: float = 0.01
    segment_min: int = 100  # held-out labels a segment value needs for its ECE to be checked
    resamples: int = 2000
    confidence: float = 0.95
    held_out_share: float = 0.2  # the latest labels, by time, kept out of the training


def time_split(timestamps: np.ndarray, ids: np.ndarray, share: float = 0.2) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices of the training labels and of the held-out ones (the latest `share` by time; every
    label at the cut's own time held out, so each training label is strictly earlier), and the cut."""
    if not len(timestamps):
        raise ValueError("no labelled requests with a score in [0, 1] and a human score")
    order = np.lexsort((ids.astype(str), timestamps.astype(str)))
    held = max(1, int(round(share * len(order))))
    cut = str(timestamps[order[len(order) - held]])
    later = timestamps.astype(str) >= cut
    return np.flatnonzero(~later), np.flatnonzero(later), cut


@dataclass(frozen=True)
class CalibratorDecision:
    status: str
    reasons: list[str]
    n: int
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate(challenger: np.ndarray, champion: np.ndarray, labels: np.ndarray, segments: dict[str, np.ndarray],
         policy: CalibratorPolicy = CalibratorPolicy(), seed: int = 0) -> CalibratorDecision:
    """The challenger's and the champion's probabilities of good on the same held-out requests,
    their binary labels (1 good) and segment values (field -> value per request)."""
    challenger, champion, y = (np.asarray(a, float) for a in (challenger, champion, labels))
    n = len(y)
    if n < policy.min_held_out or len(np.unique(y)) < 2:
        return CalibratorDecision(PENDING, [f"{n} held-out labels: too few to decide (at least "
                                            f"{policy.min_held_out}, of both kinds)"], n)
    # one canonical order, whatever order the requests came in: the bootstrap draws the same ones
    order = np.lexsort((challenger, champion, y))
    improvement = (fit.log_losses(champion, y) - fit.log_losses(challenger, y))[order]
    rng = np.random.default_rng(seed)
    draws = improvement[rng.integers(0, n, (policy.resamples, n))].mean(axis=1)
    tail = (1 - policy.confidence) / 2
    low, high = (float(v) for v in np.quantile(draws, [tail, 1 - tail]))
    ours, theirs = fit.figures(challenger, y), fit.figures(champion, y)
    figures: dict[str, Any] = {"challenger": ours, "champion": theirs,
                               "log_loss_improvement": float(improvement.mean()),
                               "log_loss_improvement_ci": (low, high), "segments": {}}
    reasons, worse = [], []
    for name, column in sorted(segments.items()):
        column = np.asarray(column, dtype=object)
        for value in sorted(set(column.tolist())):
            member = column == value
            if member.sum() < policy.segment_min or len(np.unique(y[member])) < 2:
                continue
            mine, theirs_there = (stats.calibration(p[member], y[member]).ece for p in (challenger, champion))
            figures["segments"].setdefault(name, {})[str(value)] = {"n": int(member.sum()), "ece": mine,
                                                                    "champion_ece": theirs_there}
            if mine > theirs_there:
                worse.append(f"{name}={value} ({mine:.4f} vs {theirs_there:.4f})")
    summary = (f"log loss {ours['log_loss']:.4f} vs {theirs['log_loss']:.4f} (improvement "
               f"{improvement.mean():+.4f}, {policy.confidence:.0%} CI [{low:+.4f}, {high:+.4f}]); ECE {ours['ece']:.4f} "
               f"vs {theirs['ece']:.4f}; AUROC {ours['auroc']:.4f} vs {theirs['auroc']:.4f}; {n} held-out labels")
    if high < 0:
        reasons.append(f"worse than the champion: {summary}")
    if ours["ece"] > theirs["ece"]:
        reasons.append(f"worse calibrated overall: {summary}")
    if worse:
        reasons.append("worse calibrated in " + ", ".join(worse))
    if ours["auroc"] < theirs["auroc"] - policy.max_auroc_drop:
        reasons.append(f"AUROC dropped by more than {policy.max_auroc_drop}: {summary}")
    if reasons:
        return CalibratorDecision(REJECTED, reasons, n, figures)
    if low <= 0:
        return CalibratorDecision(PENDING, [f"not surely better (the interval holds 0): {summary}"], n, figures)
    return CalibratorDecision(APPROVED, [f"better than the champion on later labels: {summary}"], n, figures)


# --- trust or escalate ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Escalation:
    threshold: float | None  # confidence at or above which the judge decides alone; None: never
    alpha: float
    delta: float
    n: int  # held-out labels it was set on
    decided_alone: int  # of them, at or above the threshold
    disagreements: int  # among those
    upper_bound: float | None  # the Clopper-Pearson bound of their disagreement rate
    tested: int  # thresholds tested in sequence

    def needs_review(self, p_good: float) -> bool:
        return self.threshold is None or max(p_good, 1 - p_good) < self.threshold


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """The one-sided upper 1 - delta Clopper-Pearson bound of a rate of k in n."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(1 - delta, k + 1, n - k))


def escalation(p_good: np.ndarray, labels: np.ndarray, alpha: float = 0.1, delta: float = 0.1,
               min_decided: int = 30) -> Escalation:
    """The lowest confidence threshold that fixed-sequence testing passes (module docstring):
    the candidates are the distinct confidences of the held-out requests, from the highest down,
    each tested once it covers at least `min_decided` requests."""
    p, y = np.asarray(p_good, float), np.asarray(labels, float)
    confidence = np.maximum(p, 1 - p)
    wrong = ((p >= 0.5).astype(float) != y)
    order = np.lexsort((wrong, -confidence))
    sorted_confidence, sorted_wrong = confidence[order], wrong[order]
    cumulative_wrong = np.cumsum(sorted_wrong)
    passed = Escalation(None, alpha, delta, len(y), 0, 0, None, 0)
    tested = 0
    for threshold in np.unique(sorted_confidence)[::-1]:
        covered = int(np.searchsorted(-sorted_confidence, -threshold, side="right"))
        if covered < min_decided:
            continue
        tested += 1
        k = int(cumulative_wrong[covered - 1])
        bound = clopper_pearson_upper(k, covered, delta)
        if bound > alpha:
            break
        passed = Escalation(float(threshold), alpha, delta, len(y), covered, k, bound, tested)
    return Escalation(passed.threshold, alpha, delta, len(y), passed.decided_alone, passed.disagreements,
                      passed.upper_bound, tested)
