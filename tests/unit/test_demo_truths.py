"""The demo's verdicts: each one fails when what the report found contradicts what was planted."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar

from feedback_loop.demo import truths
from feedback_loop.demo.traffic import Ledger
from feedback_loop.simulate import Scenario

SCENARIO = Scenario()


def flagged(*values: str) -> dict:
    return {"miscalibration": {"flagged_segments": [
        {"field": "query_type", "value": v, "n": 100, "rate": 0.4, "rest_rate": 0.2, "p_value_adjusted": 1e-4}
        for v in values]}}


@pytest.mark.parametrize(("values", "holds"), [(("code",), True), (("code", "qa"), False), ((), False),
                                               (("qa",), False)])
def test_only_the_planted_segment_may_be_flagged(values, holds) -> None:
    assert truths.miscalibrated(flagged(*values), SCENARIO).holds is holds


def impact(change: str, **significant: tuple[float, bool]) -> dict:
    entries = []
    for metric in ("evaluator_overall", "human_score", "thumbs_up_share", "feedback_rate"):
        diff, is_significant = significant.get(metric, (0.01, False))
        entries.append({"change": change, "metric": metric, "diff": diff, "diff_ci": [diff - 0.05, diff + 0.05],
                        "p_value_adjusted": 0.001 if is_significant else 0.6, "significant": is_significant,
                        "before": {"n": 100}, "after": {"n": 100}})
    return {"impact": entries}


def test_the_real_change_must_be_a_significant_improvement() -> None:
    name = SCENARIO.changes()[0].name
    assert truths.real_change(impact(name, human_score=(0.2, True)), SCENARIO, 0.2).holds
    assert not truths.real_change(impact(name, human_score=(0.2, False)), SCENARIO, 0.2).holds
    assert not truths.real_change(impact(name, human_score=(-0.2, True)), SCENARIO, 0.2).holds
    assert not truths.real_change({"impact": []}, SCENARIO, 0.2).holds


def test_the_null_change_must_be_significant_on_nothing() -> None:
    name = SCENARIO.changes()[1].name
    assert truths.null_change(impact(name), SCENARIO).holds
    assert not truths.null_change(impact(name, evaluator_overall=(0.05, True)), SCENARIO).holds
    assert not truths.null_change({"impact": []}, SCENARIO).holds  # not measured is not a match


def cohorts(rates: dict[str, float], n: int = 10_000) -> dict:
    return {"cohorts": {name: {"requests": n, "rate": rate, "rate_ci": [rate - 0.01, rate + 0.01]}
                        for name, rate in rates.items()}}


def test_cohort_rates_must_be_near_the_planted_ones_and_in_order() -> None:
    assert truths.cohort_rates(cohorts({"free": 0.041, "pro": 0.148, "enterprise": 0.395}), SCENARIO).holds
    assert not truths.cohort_rates(cohorts({"free": 0.08, "pro": 0.148, "enterprise": 0.395}), SCENARIO).holds
    assert not truths.cohort_rates(cohorts({"free": 0.041, "pro": 0.148}), SCENARIO).holds


def test_collection_must_store_every_acknowledged_event_once() -> None:
    ledger = Ledger()
    ledger.record([{"event_id": "a"}, {"event_id": "b"}, {"event_id": "bad"}], [(201, []), (200, []), (422, ["value"])],
                  {2: "value"})
    ledger.malformed_sent = 1
    assert truths.collection(ledger, stored=2, malformed_stored=0).holds
    assert not truths.collection(ledger, stored=3, malformed_stored=0).holds  # one stored twice
    assert not truths.collection(ledger, stored=2, malformed_stored=1).holds
    wrong_field = Ledger()
    wrong_field.record([{"event_id": "bad"}], [(422, ["timestamp"])], {0: "value"})
    wrong_field.malformed_sent = 1
    assert not truths.collection(wrong_field, stored=0, malformed_stored=0).holds


def test_the_live_comparison_matches_sklearn_and_an_exact_mcnemar_test() -> None:
    rng = np.random.default_rng(3)
    n = 400
    good = rng.random(n) < 0.6
    deployed = np.clip(good * 0.5 + rng.normal(0.25, 0.2, n), 0, 1)
    original = np.clip(good * 0.2 + rng.normal(0.45, 0.25, n), 0, 1)
    kinds = rng.choice(["code", "qa"], n)
    labelled = [{"request_id": f"r{i}", "human_label": "good" if good[i] else "bad", "overall": float(deployed[i]),
                 "segments": {"query_type": str(kinds[i])}} for i in range(n)]
    labelled.append({"request_id": "neutral", "human_label": "neutral", "overall": 0.5, "segments": {}})
    comparison = truths.live_comparison(labelled, {f"r{i}": float(original[i]) for i in range(n)} | {"neutral": 0.5},
                                        threshold=0.5)
    assert comparison["n"] == n
    assert comparison["deployed"] == pytest.approx(roc_auc_score(good, deployed))
    assert comparison["original"] == pytest.approx(roc_auc_score(good, original))
    code = kinds == "code"
    wrong_d, wrong_o = (deployed > 0.5) != good, (original > 0.5) != good
    table = [[int((~wrong_o & ~wrong_d & code).sum()), int((~wrong_o & wrong_d & code).sum())],
             [int((wrong_o & ~wrong_d & code).sum()), int((wrong_o & wrong_d & code).sum())]]
    entry = comparison["by_segment"]["code"]
    assert entry["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert entry["deployed_disagreement"] == pytest.approx(wrong_d[code].mean())
    assert truths.next_week(comparison, SCENARIO).holds
    worse = {**comparison, "deployed": 0.5}
    assert not truths.next_week(worse, SCENARIO).holds


def _quality(corrected: tuple[float, float], labelled: tuple[float, float]) -> dict:
    return {"quality": {"requests": 10_000, "labelled": 900,
                        "ppi_by_cohort": {"estimate": sum(corrected) / 2, "ci": list(corrected)},
                        "labelled_only": {"mean": sum(labelled) / 2, "ci": list(labelled)}}}


@pytest.mark.parametrize(("corrected", "labelled", "holds"), [
    ((0.47, 0.51), (0.57, 0.60), True),  # corrected holds the truth, the labelled mean misses it
    ((0.50, 0.53), (0.57, 0.60), False),  # corrected misses it
    ((0.47, 0.51), (0.48, 0.60), False),  # the labelled mean holds it too: nothing shown
])
def test_the_quality_of_all_traffic_must_hold_the_population_value_where_the_labelled_mean_does_not(
        corrected, labelled, holds) -> None:
    assert truths.quality_of_all_traffic(_quality(corrected, labelled), 0.49).holds is holds
    assert not truths.quality_of_all_traffic({"quality": None}, 0.49).holds


def _calibrator(status: str = "Approved", raw: float = 0.23, calibrated: float = 0.07, served: str | None = "m1",
                deployed: bool = True) -> dict:
    return {"gate": {"status": status, "gate": {"n": 184, "figures": {
                "champion": {"ece": raw}, "challenger": {"ece": calibrated}, "log_loss_improvement_ci": [2.8, 6.1]}},
                     "split": {"cut": "2026-11-21T11:08:00Z"}},
            "deployed": {"map_id": "m1"} if deployed else None, "served": served,
            "applied": {"code": {"p_good": 0.14}, "qa": {"p_good": 0.59}}}


@pytest.mark.parametrize("calibrator, holds", [
    (_calibrator(), True),
    (_calibrator(status="PendingManualApproval", deployed=False, served=None), False),
    (_calibrator(served="another map"), False),  # the API serves something else than what was deployed
    (_calibrator(calibrated=0.3), False),  # worse calibrated than the raw grades
    (None, False),
])
def test_the_calibrated_judge_must_be_approved_served_and_better_calibrated(calibrator, holds) -> None:
    verdict = truths.calibrated_judge(calibrator)
    assert verdict.holds is holds
    if holds:
        assert "held-out ECE 0.070 vs the raw grades' 0.230 (n=184" in verdict.found and "code 0.14" in verdict.found


def test_the_judge_grades_1_to_10_whatever_the_order_biased_by_query_type() -> None:
    """The demo's LLM judge: integer grades, the same for a record whatever else was graded, and for
    the same underlying score kinder to summaries than to Q&A."""
    from feedback_loop.demo.traffic import judge_grade, judged
    from feedback_loop.simulate import Scenario, simulate

    records, _ = simulate(Scenario(requests=3000, seed=3))
    grades = [judge_grade(r) for r in records]
    assert set(grades) <= set(range(1, 11)) and len(set(grades)) >= 8
    assert [judge_grade(r) for r in reversed(records)] == grades[::-1]
    assert all(judged(r)["eval_scores"]["overall"] == g / 10 for r, g in zip(records[:50], grades))
    same = {"request_id": "r-1", "eval_scores": {"overall": 0.6}}
    summary = judge_grade({**same, "metadata": {"query_type": "summarize"}})
    qa = judge_grade({**same, "metadata": {"query_type": "qa"}})
    assert summary - qa == 2
