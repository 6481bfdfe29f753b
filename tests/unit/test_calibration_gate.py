"""The calibrator's gate on planted good, useless and harmful calibrators, the time split, and the
trust-or-escalate guarantee's coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from feedback_loop.calibration import fit as calibration
from feedback_loop.calibration import gate

from .test_calibration import judged


def split_week(n: int = 6000, seed: int = 0):
    data = calibration.labelled(judged(n, seed), ("query_type",))
    binary = data.take(np.flatnonzero((data.human >= 0.75) | (data.human <= 0.25)))
    train, held, cut = gate.time_split(binary.timestamps, binary.ids, 0.25)
    return binary.take(train), binary.take(held), cut


def test_the_time_split_holds_out_the_latest_labels() -> None:
    train, held, cut = split_week()
    assert max(train.timestamps) < cut <= min(held.timestamps)
    assert 0.2 < len(held) / (len(train) + len(held)) < 0.3


def test_a_calibrator_fitted_on_earlier_labels_is_approved() -> None:
    train, held, _ = split_week()
    fitted = calibration.fit(train, ("query_type",))
    challenger = calibration.predict(fitted.map.p_good, held)
    decision = gate.gate(challenger, held.score, (held.human >= 0.75).astype(float), held.segments)
    assert decision.status == gate.APPROVED, decision.reasons
    assert decision.figures["log_loss_improvement_ci"][0] > 0
    assert set(decision.figures["segments"]["query_type"]) == {"chat", "code", "summarize"}


def test_a_useless_calibrator_waits_for_a_person_and_a_harmful_one_is_rejected() -> None:
    train, held, _ = split_week()
    labels = (held.human >= 0.75).astype(float)
    fitted = calibration.predict(calibration.fit(train, ("query_type",)).map.p_good, held)
    same = gate.gate(fitted, fitted, labels, held.segments)
    assert same.status == gate.PENDING and "holds 0" in same.reasons[0]
    overconfident = np.clip((fitted - 0.5) * 3 + 0.5, 0.001, 0.999)  # the right order, too sure
    harmful = gate.gate(overconfident, fitted, labels, held.segments)
    assert harmful.status == gate.REJECTED and any("worse" in r for r in harmful.reasons)
    shuffled = gate.gate(np.random.default_rng(1).permutation(fitted), fitted, labels, held.segments)
    assert shuffled.status == gate.REJECTED and any("AUROC dropped" in r for r in shuffled.reasons)
    few = gate.gate(fitted[:50], held.score[:50], labels[:50], {})
    assert few.status == gate.PENDING and "too few" in few.reasons[0]


def test_a_calibrator_worse_in_one_segment_is_rejected_and_said_where() -> None:
    train, held, _ = split_week(9000)
    labels = (held.human >= 0.75).astype(float)
    fitted = calibration.predict(calibration.fit(train, ("query_type",)).map.p_good, held)
    code = held.segments["query_type"] == "code"
    spoiled = np.where(code, np.clip(fitted + 0.25, 0, 0.999), fitted)
    decision = gate.gate(spoiled, fitted, labels, held.segments)
    assert decision.status == gate.REJECTED and any("query_type=code" in r for r in decision.reasons)


def test_the_gate_does_not_depend_on_the_order_of_the_requests() -> None:
    train, held, _ = split_week()
    labels = (held.human >= 0.75).astype(float)
    fitted = calibration.predict(calibration.fit(train, ("query_type",)).map.p_good, held)
    order = np.random.default_rng(2).permutation(len(labels))
    one = gate.gate(fitted, held.score, labels, held.segments)
    two = gate.gate(fitted[order], held.score[order], labels[order], {k: v[order] for k, v in held.segments.items()})
    assert one.figures["log_loss_improvement_ci"] == pytest.approx(two.figures["log_loss_improvement_ci"], abs=1e-12)


def test_the_clopper_pearson_bound_is_scipys() -> None:
    assert gate.clopper_pearson_upper(3, 100, 0.1) == pytest.approx(
        sps.binomtest(3, 100).proportion_ci(0.8, method="exact").high, abs=1e-9)
    assert gate.clopper_pearson_upper(5, 5, 0.1) == 1.0


def test_the_judges_confident_verdicts_agree_with_users_as_guaranteed() -> None:
    """Trust or escalate by simulation: over 300 independent weeks, a calibrator fitted on one part
    of the labels, the threshold set on another, the agreement of the confident verdicts measured on
    a large fresh sample: it is at least 1 - alpha in at least 1 - delta of the weeks; and the judge
    decides alone a sizeable share of the traffic."""
    alpha, delta = 0.15, 0.1
    rng = np.random.default_rng(5)
    met, shares = 0, []
    for week in range(300):
        quality = rng.beta(0.6, 0.6, 7000)
        score = np.clip(np.round(1 + 9 * quality + rng.normal(0, 1.0, 7000)), 1, 10).astype(float)
        score = (score - 1) / 9
        good = (rng.random(7000) < quality).astype(float)
        rows = [{"request_id": f"{week}-{i}", "overall": float(s), "human_score": float(g)}
                for i, (s, g) in enumerate(zip(score[:2000], good[:2000]))]
        calibration_map = calibration.fit(calibration.labelled(rows)).map
        p = np.array([calibration_map.apply(s)["p_good"] for s in np.unique(score)])
        lookup = dict(zip(np.unique(score), p))
        held = np.array([lookup[s] for s in score[2000:3000]])
        found = gate.escalation(held, good[2000:3000], alpha=alpha, delta=delta)
        fresh = np.array([lookup[s] for s in score[3000:]])
        alone = np.array([not found.needs_review(v) for v in fresh])
        if alone.any():
            agreement = np.mean((fresh[alone] >= 0.5) == (good[3000:][alone] == 1))
            met += agreement >= 1 - alpha
        else:
            met += 1
        shares.append(alone.mean())
    assert met / 300 >= 1 - delta
    assert np.mean(shares) > 0.2


def test_fit_gated_judges_the_map_on_later_labels_and_sets_who_needs_review() -> None:
    from feedback_loop.calibration.curves import CalibrationMap

    data = calibration.labelled(judged(8000), ("query_type",))
    fitted, decision = calibration.fit_gated(data, ("query_type",), alpha=0.2, delta=0.1)
    calibration_map = CalibrationMap.loads(fitted.map.dumps())
    trained = calibration_map.trained
    assert decision.status == gate.APPROVED and trained["gate"]["status"] == gate.APPROVED
    assert trained["split"]["training"] + trained["split"]["held_out"] == 8000
    assert trained["until"] < trained["split"]["cut"]  # every training label is earlier than every held-out one
    escalation = calibration_map.escalation
    assert escalation["threshold"] is not None and escalation["upper_bound"] <= 0.2
    assert set(escalation["by_segment"]["query_type"]) == {"chat", "code", "summarize"}
    for score in np.linspace(0, 1, 10):
        for query_type in ("code", "chat", "other"):
            found = calibration_map.apply(score, {"query_type": query_type})
            threshold = calibration_map.review_threshold({"query_type": query_type})
            expected = threshold is None or max(found["p_good"], 1 - found["p_good"]) < threshold
            assert found["needs_review"] == expected
    assert calibration_map.review_threshold({"query_type": "other"}) == escalation["threshold"]


def test_labels_without_times_cannot_be_split_by_time_and_say_so() -> None:
    rows = [{**row, "timestamp": ""} for row in judged(500)]
    with pytest.raises(ValueError, match="same timestamp.*--held-out-share 0"):
        calibration.fit_gated(calibration.labelled(rows))
