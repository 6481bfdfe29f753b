"""The analysis on simulated traffic: planted truths recovered, every figure recomputed independently."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import brier_score_loss, cohen_kappa_score, roc_auc_score

from feedback_loop.analysis import stats
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.run import run_analysis, write_local
from feedback_loop.simulate import Cohort, Scenario, expected_effect, population_satisfaction, simulate

from ..analysis_data import read_jsonl, write_eval_logs, write_feedback
from .test_small_samples import explicit_cross_fitted

SCENARIO = Scenario(requests=20_000, seed=11)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenario")
    records, events = simulate(SCENARIO)
    logs = write_eval_logs(records, root / "eval-logs")
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, root / "feedback.jsonl"))
    analysis = run_analysis("sim", EvalLogSource(str(logs)), feedback, SCENARIO.changes(), SCENARIO.start, SCENARIO.end)
    files = write_local(analysis, root / "out")
    return analysis.report, read_jsonl(files["labelled.jsonl"]), read_jsonl(files["disagreements.jsonl"]), records


def impact(report, change, metric):
    return next(e for e in report["impact"] if e["change"] == change and e["metric"] == metric)


def test_the_planted_miscalibrated_segment_is_flagged_and_only_it_among_query_types(result) -> None:
    report = result[0]
    by_type = report["miscalibration"]["by_segment"]["query_type"]
    assert by_type["code"]["flagged"]
    assert not by_type["qa"]["flagged"] and not by_type["summarize"]["flagged"]
    assert {"field": "query_type", "value": "code"}.items() <= report["miscalibration"]["flagged_segments"][0].items()
    assert by_type["code"]["rate"] > 2 * by_type["qa"]["rate"]


def test_planted_cohort_feedback_rates_are_recovered(result) -> None:
    cohorts = result[0]["cohorts"]
    for planted in SCENARIO.cohorts:
        entry = cohorts[planted.name]
        se = math.sqrt(planted.feedback_rate * (1 - planted.feedback_rate) / entry["requests"])
        assert abs(entry["rate"] - planted.feedback_rate) < 4 * se, planted.name
        low, high = entry["rate_ci"]
        assert low < entry["rate"] < high
    assert cohorts["free"]["below_target"] and not cohorts["enterprise"]["below_target"]
    assert cohorts["free"]["satisfaction"] < cohorts["pro"]["satisfaction"] < cohorts["enterprise"]["satisfaction"]


def test_reweighting_recovers_the_population_satisfaction(result) -> None:
    weighting = result[0]["weighting"]
    truth = population_satisfaction(SCENARIO)
    assert abs(weighting["weighted_satisfaction"] - truth) < 0.02
    assert abs(weighting["unweighted_satisfaction"] - truth) > 0.05  # the bias it corrects


def test_the_change_with_an_effect_is_significant_and_the_one_without_is_not(result) -> None:
    report = result[0]
    human = impact(report, "prompt-v8", "human_score")
    assert human["significant"] and human["diff"] > 0.1 and human["diff_ci"][0] > 0
    overall = impact(report, "prompt-v8", "evaluator_overall")
    assert overall["significant"] and overall["diff_ci"][0] < SCENARIO.effect_size < overall["diff_ci"][1] + 0.03
    for metric in ("evaluator_overall", "human_score", "thumbs_up_share", "feedback_rate"):
        assert not impact(report, "model-minor-bump", metric)["significant"], metric
    assert report["regressions"] == []
    assert human["before"]["end"] < human["after"]["start"]
    assert human["after"]["start"] >= SCENARIO.change_at.isoformat().replace("+00:00", "Z")


def test_correlation_and_agreement_match_independent_computations_on_the_labelled_set(result) -> None:
    report, labelled, disagreements, _ = result
    overall = np.array([e["overall"] for e in labelled])
    human = np.array([e["human_score"] for e in labelled])
    correlation = report["correlation"]["overall"]
    assert correlation["n"] == len(labelled) == report["counts"]["requests_with_human_score"]
    assert correlation["pearson"]["r"] == pytest.approx(sps.pearsonr(overall, human).statistic)
    assert correlation["spearman"]["r"] == pytest.approx(sps.spearmanr(overall, human).statistic)
    assert correlation["kendall"]["r"] == pytest.approx(sps.kendalltau(overall, human, variant="b").statistic)
    assert correlation["pearson"]["ci"] == pytest.approx(list(sps.pearsonr(overall, human).confidence_interval(0.95)))

    binary = [e for e in labelled if e["human_label"] in ("good", "bad")]
    y = np.array([e["human_label"] == "good" for e in binary])
    p = np.array([e["overall"] for e in binary])
    agreement = report["agreement"]
    assert agreement["auroc"]["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert agreement["cohen_kappa"]["kappa"] == pytest.approx(cohen_kappa_score(y, p > 0.7))
    assert agreement["brier"] == pytest.approx(brier_score_loss(y, p))
    assert sum(b["n"] for b in agreement["reliability_bins"]) == len(binary)

    mis = report["miscalibration"]
    assert mis["n"] == len(binary)
    assert mis["disagreements"] == len(disagreements) == int(np.sum((p > 0.7) != y))
    assert mis["evaluator_too_high"] == sum(d["direction"] == "evaluator_too_high" for d in disagreements)


def test_segment_correlations_match_scipy_and_small_segments_are_insufficient(result) -> None:
    report, labelled, _, _ = result
    code = [e for e in labelled if e["segments"]["query_type"] == "code"]
    entry = report["correlation"]["by_segment"]["query_type"]["code"]
    assert entry["n"] == len(code)
    assert entry["spearman"]["r"] == pytest.approx(
        sps.spearmanr([e["overall"] for e in code], [e["human_score"] for e in code]).statistic)
    for values in report["correlation"]["by_segment"].values():
        for value in values.values():
            assert value["insufficient"] == (value["n"] < 30)


def test_weights_and_effective_sample_size_recomputed_from_the_dataset(result) -> None:
    report, labelled, _, _ = result
    cohorts = report["cohorts"]
    population = sum(c["requests"] for c in cohorts.values())
    weights = np.array([e["weight"] for e in labelled])
    assert weights.mean() == pytest.approx(1.0)
    for name, cohort in cohorts.items():
        members = [e for e in labelled if e["cohort"] == name]
        assert all(e["weight"] == pytest.approx(cohort["weight"]) for e in members)
        # each cohort's labelled requests carry its share of the population
        assert sum(e["weight"] for e in members) / weights.sum() == pytest.approx(cohort["requests"] / population)
    assert report["weighting"]["kish_ess"] == pytest.approx(weights.sum() ** 2 / (weights**2).sum())
    human = np.array([e["human_score"] for e in labelled])
    assert report["weighting"]["weighted_satisfaction"] == pytest.approx(np.average(human, weights=weights))


def test_feedback_rates_follow_the_definition(result) -> None:
    report, _, _, records = result
    assert report["counts"]["eval_records"] == len(records)
    assert sum(c["requests"] for c in report["cohorts"].values()) == len(records)
    for cohort in report["cohorts"].values():
        assert cohort["rate"] == pytest.approx(cohort["with_feedback"] / cohort["requests"])


def test_impact_numbers_recomputed_from_raw_records(result) -> None:
    report, _, _, records = result
    change = SCENARIO.changes()[0]
    start = (change.effective_at - timedelta(days=7)).isoformat().replace("+00:00", "Z")
    cut = change.effective_at.isoformat().replace("+00:00", "Z")
    segment = [r for r in records if r["metadata"]["query_type"] == "summarize"]
    before = np.array([r["eval_scores"]["overall"] for r in segment if start <= r["timestamp"] < cut])
    after = np.array([r["eval_scores"]["overall"] for r in segment if r["timestamp"] >= cut])
    entry = impact(report, "prompt-v8", "evaluator_overall")
    assert (entry["before"]["n"], entry["after"]["n"]) == (len(before), len(after))
    reference = sps.ttest_ind(after, before, equal_var=False)
    assert entry["p_value"] == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-300)
    assert entry["diff_ci"] == pytest.approx(list(reference.confidence_interval(0.95)))
    adjusted = sorted(e["p_value_adjusted"] for e in report["impact"])
    raw = sorted(e["p_value"] for e in report["impact"])
    assert all(a >= r for a, r in zip(adjusted, raw))


def test_datasets_have_a_stable_split(result) -> None:
    _, labelled, _, _ = result
    share = sum(e["split"] == "validation" for e in labelled) / len(labelled)
    assert 0.15 < share < 0.25
    assert all(set(e) >= {"request_id", "prompt", "output", "overall", "human_score", "human_label", "weight", "split"}
               for e in labelled)


def test_a_harmful_change_is_listed_as_a_regression(tmp_path: Path) -> None:
    scenario = Scenario(requests=12_000, seed=5, effect_size=-0.2)
    records, events = simulate(scenario)
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, tmp_path / "f.jsonl"))
    report = run_analysis("sim", EvalLogSource(str(write_eval_logs(records, tmp_path / "logs"))), feedback,
                          scenario.changes(), scenario.start, scenario.end).report
    # on the labelled requests and on all traffic (the same BH correction over every impact test)
    assert [(r["change"], r["metric"]) for r in report["regressions"]] == [("prompt-v8", "human_score"),
                                                                          ("prompt-v8", "human_score_all_traffic")]
    assert math.isclose(report["regressions"][0]["diff"], impact(report, "prompt-v8", "human_score")["diff"])
    # the report opens with it: the first finding, linked to the impact section
    first = report["findings"][0]
    assert first["level"] == "attention" and first["section"] == "impact"
    assert first["text"].startswith("prompt-v8 lowered")


def test_the_report_opens_with_its_findings_most_important_first(result) -> None:
    """The planted miscalibrated segment needs attention; the improvement, the cohort below the
    feedback target and the segments too small to test are notes after it; the HTML lists them
    first, each linking to its section."""
    from feedback_loop.analysis.html import render_html

    report = result[0]
    findings = report["findings"]
    levels = [f["level"] for f in findings]
    assert levels == sorted(levels, key=["attention", "note"].index)  # attention first
    texts = {f["section"]: f["text"] for f in findings}
    assert findings[0]["section"] == "miscalibration" and "query_type = code" in findings[0]["text"]
    assert any(f["section"] == "impact" and f["text"].startswith("prompt-v8 raised the human score") for f in findings)
    low = [name for name, c in report["cohorts"].items() if c["below_target"]]
    assert low and all(name in texts["cohorts"] for name in low)
    html = render_html(report)
    from .test_analysis_real_data import assert_intervals_hold, assert_no_object_leaks

    assert_no_object_leaks(html)
    assert_intervals_hold(report)
    assert html.index('id="findings"') < html.index('id="correlation"')
    assert html.count('<a href="#miscalibration">') >= 1 and 'id="miscalibration"' in html


def test_the_corrected_quality_of_all_traffic_recovers_the_population_where_the_labelled_mean_does_not(result) -> None:
    """The planted scenario: feedback comes mostly from cohorts that are happier than the rest. The
    PPI++ estimate per cohort, combined by the cohorts' shares of the requests, holds the
    simulator's population mean human score in its interval; the labelled-only mean does not."""
    quality = result[0]["quality"]
    truth = population_satisfaction(SCENARIO)
    by_cohort = quality["ppi_by_cohort"]
    low, high = by_cohort["ci"]
    assert low <= truth <= high and high - low < 0.05
    labelled_low, labelled_high = quality["labelled_only"]["ci"]
    assert not labelled_low <= truth <= labelled_high
    assert quality["requests"] == SCENARIO.requests and by_cohort["cohorts_without_labels"] == []
    shares = [c["share"] for c in by_cohort["by_cohort"].values()]
    assert sum(shares) == pytest.approx(1.0)
    cohorts = by_cohort["by_cohort"].values()
    assert by_cohort["estimate"] == pytest.approx(sum(c["share"] * c["estimate"] for c in cohorts))


def test_the_share_of_good_answers_per_cohort_is_the_authors_ppi_in_each_cohort_combined(result) -> None:
    """Independently: ppi_py's estimate and interval in each cohort, from the labelled rows of the
    dataset and the evaluator's scores on every record of the cohort, combined by the cohorts' shares."""
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    report, labelled, _, records = result
    good_share = report["quality"]["good_share"]["ppi_by_cohort"]
    since, until = SCENARIO.start.isoformat()[:19], SCENARIO.end.isoformat()[:19]
    in_window = [r for r in records if since <= r["timestamp"][:19] < until]
    labelled_ids = {e["request_id"] for e in labelled}
    total = len(in_window)
    estimate, variance = 0.0, 0.0
    for cohort, entry in good_share["by_cohort"].items():
        rows = [e for e in labelled if e["cohort"] == cohort]
        y = np.array([e["human_score"] >= 0.75 for e in rows], float)
        yhat = np.array([e["overall"] for e in rows])
        unlabelled = np.array([r["eval_scores"]["overall"] for r in in_window
                               if r["metadata"]["user_cohort"] == cohort and r["request_id"] not in labelled_ids])
        assert entry["estimate"] == pytest.approx(float(ppi_mean_pointestimate(y, yhat, unlabelled)[0]), abs=1e-9)
        low, high = ppi_mean_ci(y, yhat, unlabelled, alpha=0.05)
        assert entry["ci"] == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)
        share = (len(rows) + len(unlabelled)) / total
        estimate += share * entry["estimate"]
        variance += share**2 * ((high[0] - low[0]) / 2 / 1.959963984540054) ** 2
    assert good_share["estimate"] == pytest.approx(estimate, abs=1e-9)
    half = good_share["ci"][1] - good_share["estimate"]
    assert half == pytest.approx(1.959963984540054 * math.sqrt(variance), abs=1e-9)


def test_the_impact_on_all_traffic_is_the_authors_ppi_per_cohort_on_each_side(result) -> None:
    """Independently: on each side of the planted change, ppi_py in each cohort from the labelled
    rows of the dataset and the evaluator's scores on the side's other records, combined by the
    side's cohort shares; the difference's normal interval and p-value from those; the entry sits
    in the same Benjamini-Hochberg family as the labelled-only one."""
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    report, labelled, _, records = result
    change = SCENARIO.changes()[0]
    cut = change.effective_at.isoformat()[:19]
    start = (change.effective_at - timedelta(days=7)).isoformat()[:19]
    end = (change.effective_at + timedelta(days=7)).isoformat()[:19]
    labelled_ids = {e["request_id"] for e in labelled}
    sides = {}
    for name, (low, high) in {"before": (start, cut), "after": (cut, end)}.items():
        side = [r for r in records if low <= r["timestamp"][:19] < high and r["metadata"]["query_type"] == "summarize"]
        rows = [e for e in labelled if low <= e["timestamp"][:19] < high and e["segments"]["query_type"] == "summarize"]
        estimate, parts = 0.0, []
        for cohort in sorted({r["metadata"]["user_cohort"] for r in side}):
            mine = [e for e in rows if e["cohort"] == cohort]
            y, yhat = np.array([e["human_score"] for e in mine]), np.array([e["overall"] for e in mine])
            unlabelled = np.array([r["eval_scores"]["overall"] for r in side
                                   if r["metadata"]["user_cohort"] == cohort and r["request_id"] not in labelled_ids])
            share = (len(mine) + len(unlabelled)) / len(side)
            if len(mine) >= stats.ASYMPTOTIC_FROM:  # the authors' PPI++, normal theory
                mean = float(ppi_mean_pointestimate(y, yhat, unlabelled)[0])
                low_ci, high_ci = ppi_mean_ci(y, yhat, unlabelled, alpha=0.05)
                se, df = (high_ci[0] - low_ci[0]) / 2 / 1.959963984540054, math.inf
            else:  # few labels: the leave-one-out lambdas and the t, written out
                mean, se, df, _ = explicit_cross_fitted(y, yhat, unlabelled)
            estimate += share * mean
            parts.append((share**2 * se**2, df))
        sides[name] = (estimate, parts, len(rows), len(side))
    entry = impact(report, "prompt-v8", "human_score_all_traffic")
    (m_b, p_b, n_b, r_b), (m_a, p_a, n_a, r_a) = sides["before"], sides["after"]
    assert (entry["before"]["n"], entry["after"]["n"], entry["before"]["requests"], entry["after"]["requests"]) == (
        n_b, n_a, r_b, r_a)
    assert entry["before"]["mean"] == pytest.approx(m_b, abs=1e-9) and entry["after"]["mean"] == pytest.approx(m_a,
                                                                                                           abs=1e-9)
    variances = [v for v, _ in p_b + p_a]
    se = math.sqrt(sum(variances))
    finite = [(v, df) for v, df in p_b + p_a if math.isfinite(df)]
    assert finite, "the planted change's sides have cohorts with few labels: the t applies"
    df = sum(variances) ** 2 / sum(v * v / d for v, d in finite)
    assert entry["df"] == pytest.approx(df, rel=1e-9) and entry["test"] == "ppi++_by_cohort_t"
    critical = sps.t.ppf(0.975, df)
    assert entry["diff_ci"] == pytest.approx((m_a - m_b - critical * se, m_a - m_b + critical * se), abs=1e-9)
    assert entry["p_value"] == pytest.approx(2 * sps.t.sf(abs(m_a - m_b) / se, df), rel=1e-6, abs=1e-300)
    assert entry["significant"] and entry["note"] is None
    # the labels alone, re-weighted by the same cohort shares, give a wider interval for the same change
    alone = entry["labels_alone"]["diff_ci"]
    assert entry["diff_ci"][1] - entry["diff_ci"][0] < 0.9 * (alone[1] - alone[0])
    p_values = [e["p_value"] for e in report["impact"]]
    ranked = sorted(p for p in p_values if p is not None)
    rank = ranked.index(entry["p_value"]) + 1
    assert entry["p_value_adjusted"] <= min(1.0, entry["p_value"] * len(ranked) / rank) + 1e-12


def test_a_change_that_helps_the_quiet_cohort_is_measured_on_all_traffic(tmp_path: Path) -> None:
    """The planted change helps the free users most, who rarely give feedback, and the enterprise
    users, who give most of it, not at all: the all-traffic impact holds the change in the mean
    over every request (the simulator's population effect), which the labelled-only difference,
    weighted by who answers, does not."""
    scenario = Scenario(requests=24_000, seed=3, effect_size=0.2, cohorts=(
        Cohort("free", 0.6, 0.03, -0.1, effect=1.5), Cohort("pro", 0.3, 0.12, 0.0, effect=0.5),
        Cohort("enterprise", 0.1, 0.5, 0.1, effect=0.0)))
    records, events = simulate(scenario)
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, tmp_path / "f.jsonl"))
    report = run_analysis("sim", EvalLogSource(str(write_eval_logs(records, tmp_path / "logs"))), feedback,
                          scenario.changes(), scenario.start, scenario.end).report
    population, answered = expected_effect(scenario, 100_000, population=True), expected_effect(scenario, 100_000)
    assert population > answered + 0.1
    all_traffic, labelled_only = (impact(report, "prompt-v8", m)["diff_ci"]
                                  for m in ("human_score_all_traffic", "human_score"))
    assert all_traffic[0] <= population <= all_traffic[1]
    assert not labelled_only[0] <= population <= labelled_only[1]
    assert labelled_only[0] <= answered <= labelled_only[1]


def test_the_quality_of_all_traffic_per_segment_is_the_authors_ppi_per_cohort_within_it(result) -> None:
    """Per query type: within it, ppi_py per cohort on the labelled rows of the dataset and the
    type's other records, combined by the type's cohort shares; each corrected estimate nearer the
    simulator's population mean of the type than the labelled-only mean; a field with one value
    (model) is not segmented."""
    from ppi_py import ppi_mean_pointestimate

    report, labelled, _, records = result
    segments = report["quality"]["segments"]
    assert segments["fields_not_segmented"] == {"model": "one value for every request"}
    labelled_ids = {e["request_id"] for e in labelled}
    for query_type, entry in segments["by_segment"]["query_type"].items():
        mine = [r for r in records if r["metadata"]["query_type"] == query_type]
        estimate = 0.0
        for cohort in sorted({r["metadata"]["user_cohort"] for r in mine}):
            rows = [e for e in labelled if e["cohort"] == cohort and e["segments"]["query_type"] == query_type]
            y, yhat = np.array([e["human_score"] for e in rows]), np.array([e["overall"] for e in rows])
            unlabelled = np.array([r["eval_scores"]["overall"] for r in mine if r["metadata"]["user_cohort"] == cohort
                                   and r["request_id"] not in labelled_ids])
            share = (len(rows) + len(unlabelled)) / len(mine)
            estimate += share * float(ppi_mean_pointestimate(y, yhat, unlabelled)[0])
        assert entry["estimate"] == pytest.approx(estimate, abs=1e-9) and entry["requests"] == len(mine)
        truth = population_satisfaction(SCENARIO, 100_000, query_type=query_type)
        assert abs(entry["estimate"] - truth) < abs(entry["labelled_only"] - truth), query_type
