"""Trends across weeks: the weeks shown, the changes on the time axis, a week's point from its
report, and the drop test's false alarm rate and power, simulated week by week through the
report's own statistics (stats.auroc, stats.kendall_tau_b)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest

from feedback_loop.analysis import stats, trends


def _week(rng: np.random.Generator, separation: float, n: int = 300) -> dict[str, dict]:
    """A week of labelled requests: good answers (60%) scored `separation` above bad ones by the
    evaluator, with noise; the users' scores 0-1 on a 1-5 scale. Its agreement figures as a point."""
    good = rng.random(n) < 0.6
    score = np.clip(0.5 + np.where(good, separation / 2, -separation / 2) + rng.normal(0, 0.15, n), 0, 1)
    human = np.where(good, rng.choice([0.75, 1.0], n), rng.choice([0.0, 0.25], n))
    return {"auroc": trends._auroc(asdict(stats.auroc(score, good)), 0.95),
            "kendall": trends._kendall(asdict(stats.kendall_tau_b(score, human)), 0.95)}


K = trends.TRAILING_WEEKS


def _alarms(history: list[dict]) -> float:
    return sum(trends.drop_test(history[i - K:i], history[i], 0.05)["flagged"] for i in range(K, len(history))) / (
        len(history) - K)


def test_stable_agreement_raises_the_alarm_at_most_at_its_level() -> None:
    """1,000 weeks whose evaluator is as good as in the weeks before: the alarm (either metric)
    goes off in at most alpha = 5% of them (the t reference and Bonferroni over the two metrics
    keep it below)."""
    rng = np.random.default_rng(40)
    assert _alarms([_week(rng, 0.2) for _ in range(1000 + K)]) <= 0.05


def test_a_week_whose_agreement_wanders_does_not_alarm_more_often() -> None:
    """The evaluator's true separation varies from week to week (new topics): the random-effects
    mean counts that variation as noise, and the alarm stays near its level."""
    rng = np.random.default_rng(41)
    assert _alarms([_week(rng, float(rng.normal(0.2, 0.03))) for _ in range(1000 + K)]) <= 0.06


def test_a_real_drop_is_flagged() -> None:
    """The evaluator loses half its separation this week (AUROC about 0.84 to 0.68): flagged in
    more than 90% of 300 simulated histories of 8 weeks; a rise is never flagged (one-sided)."""
    rng = np.random.default_rng(42)
    flagged, rises = 0, 0
    for _ in range(300):
        before = [_week(rng, 0.2) for _ in range(K)]
        result = trends.drop_test(before, _week(rng, 0.1), 0.05)
        flagged += result["flagged"]
        assert result["metrics"]["auroc"]["trailing"] == pytest.approx(
            np.average([w["auroc"]["value"] for w in before],
                       weights=[1 / (w["auroc"]["se"] ** 2 + result["metrics"]["auroc"]["tau2"]) for w in before]))
        rises += trends.drop_test(before, _week(rng, 0.3), 0.05)["flagged"]
    assert flagged / 300 > 0.9 and rises == 0


def test_the_random_effects_mean_is_dersimonian_laird() -> None:
    """Against the textbook formulas, written out: Q, C, tau^2 and the re-weighted mean."""
    values, ses = [0.80, 0.85, 0.75, 0.82], [0.02, 0.03, 0.02, 0.025]
    w = 1 / np.square(ses)
    fixed = (w * values).sum() / w.sum()
    q = (w * (np.array(values) - fixed) ** 2).sum()
    tau2 = max(0.0, (q - 3) / (w.sum() - (w**2).sum() / w.sum()))
    w_star = 1 / (np.square(ses) + tau2)
    mean, variance, got_tau2 = trends.random_effects(values, ses)
    assert got_tau2 == pytest.approx(tau2) and tau2 > 0
    assert mean == pytest.approx((w_star * values).sum() / w_star.sum()) and variance == pytest.approx(1 / w_star.sum())


def test_the_drop_test_needs_three_previous_weeks_with_a_figure() -> None:
    rng = np.random.default_rng(43)
    weeks = [_week(rng, 0.2) for _ in range(4)]
    weeks[0]["kendall"] = {"value": None, "ci": None, "se_z": None, "n": 3}
    result = trends.drop_test(weeks[1:3], weeks[3], 0.05)
    assert not result["flagged"] and result["metrics"]["auroc"]["tested"] is False
    result = trends.drop_test(weeks[:3], weeks[3], 0.05)
    assert result["metrics"]["auroc"]["tested"] and not result["metrics"]["kendall"]["tested"]


def test_the_kendall_se_comes_back_from_its_fisher_interval() -> None:
    """tau-b's interval is symmetric on Fisher's z scale: its half-width there over z is the se."""
    rng = np.random.default_rng(44)
    x = rng.random(200)
    y = np.round(4 * np.clip(x + rng.normal(0, 0.3, 200), 0, 1)) / 4
    result = stats.kendall_tau_b(x, y)
    se = stats.tau_b_se(x, y) / (1 - result.r**2)
    assert trends._kendall(asdict(result), 0.95)["se_z"] == pytest.approx(se, rel=1e-9)


def _point(run: str, since: str, until: str) -> dict:
    return {"run": run, "since": since, "until": until}


def test_the_weeks_shown_are_the_earlier_runs_that_do_not_overlap() -> None:
    current = _point("w4", "2026-06-22T00:00:00Z", "2026-06-29T00:00:00Z")
    previous = [_point("w1", "2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z"),
                _point("w3", "2026-06-15T00:00:00Z", "2026-06-22T00:00:00Z"),
                _point("hand", "2026-06-12T00:00:00Z", "2026-06-19T00:00:00Z"),  # overlaps w3: left out
                _point("w2", "2026-06-08T00:00:00Z", "2026-06-15T00:00:00Z"),
                _point("later", "2026-06-29T00:00:00Z", "2026-07-06T00:00:00Z")]  # after this week
    assert [w["run"] for w in trends.weeks(previous, current)] == ["w1", "w2", "w3", "w4"]
    many = [_point(f"p{i}", f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}T00:00:00Z",
                   f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}T12:00:00Z") for i in range(40)]
    assert len(trends.weeks(many, current)) == trends.HISTORY_WEEKS + 1


def test_a_week_from_an_older_report_without_the_new_fields() -> None:
    """A report written before the quality section and the AUROC's se: the se from its interval,
    the quality figures absent, not an error."""
    report = {"settings": {"confidence": 0.95, "alpha": 0.05},
              "window": {"since": "2026-06-01T00:00:00Z", "until": "2026-06-08T00:00:00Z"},
              "counts": {"eval_records": 100, "requests_with_human_score": 40},
              "agreement": {"auroc": {"auroc": 0.8, "ci": [0.7, 0.9], "n": 40}},
              "correlation": {"overall": {"kendall": {"r": 0.4, "ci": [0.2, 0.57], "n": 40}}},
              "cohorts": {"free": {"requests": 100, "with_feedback": 30, "rate": 0.3, "rate_ci": [0.2, 0.4]}},
              "impact": [{"change": "prompt-v2"}]}
    point = trends.point(report, "run")
    assert point["auroc"]["se"] == pytest.approx(0.1 / 1.959963984540054)
    assert point["quality"] == {"value": None, "ci": None} and point["feedback_rate"] == 0.3
    assert point["changes"] == ["prompt-v2"]
    clipped = {**report, "agreement": {"auroc": {"auroc": 0.97, "ci": [0.93, 1.0], "n": 40}}}
    assert trends.point(clipped, "run")["auroc"]["se"] is None  # a clipped interval says nothing
    assert math.isclose(trends.point(report, "run")["kendall"]["se_z"],
                        (math.atanh(0.57) - math.atanh(0.2)) / (2 * 1.959963984540054))
