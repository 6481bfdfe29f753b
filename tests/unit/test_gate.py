"""The registry gate on constructed held-out predictions, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from feedback_loop.registry.gate import APPROVED, PENDING, REJECTED, GatePolicy, gate


def rows(challenger_noise: float, champion_noise: float, n: int = 400, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    clip = lambda x: np.clip(x, 0, 1)  # noqa: E731
    challenger = clip(0.5 + (labels - 0.5) * 0.6 + rng.normal(0, challenger_noise, n))
    champion = clip(0.5 + (labels - 0.5) * 0.6 + rng.normal(0, champion_noise, n))
    return [{"label": int(l), "challenger": float(c), "champion": float(h)} for l, c, h in zip(labels, challenger, champion)]


def test_a_clearly_better_and_no_worse_calibrated_challenger_is_approved() -> None:
    rng = np.random.default_rng(1)
    # the challenger says about 0.95 for good and 0.05 for bad (calibrated); the champion is noisy
    data = [{**r, "challenger": float(np.clip(0.05 + 0.9 * r["label"] + rng.normal(0, 0.02), 0, 1))}
            for r in rows(0.1, 0.4)]
    decision = gate(data, GatePolicy())
    labels = [r["label"] for r in data]
    assert decision.challenger.auroc == pytest.approx(roc_auc_score(labels, [r["challenger"] for r in data]))
    assert decision.champion.auroc == pytest.approx(roc_auc_score(labels, [r["champion"] for r in data]))
    assert decision.status == APPROVED and decision.n == 400


def test_worse_is_rejected_and_marginal_or_worse_calibrated_is_left_pending() -> None:
    assert gate(rows(0.4, 0.1), GatePolicy()).status == REJECTED
    assert gate(rows(0.3, 0.32), GatePolicy(min_auroc_gain=0.05)).status == PENDING
    worse_calibrated = [{**r, "challenger": r["challenger"] ** 3} for r in rows(0.1, 0.4)]  # same ranking, skewed
    decision = gate(worse_calibrated, GatePolicy())
    assert decision.status == PENDING and "calibration" in decision.reasons[0]


def test_too_few_labels_or_missing_champion_scores_cannot_approve() -> None:
    assert gate(rows(0.1, 0.4, n=20), GatePolicy()).status == PENDING
    no_champion = [{**r, "champion": None} for r in rows(0.1, 0.4)]
    assert gate(no_champion, GatePolicy()).n == 0
