"""The demo's verdicts: each planted truth, what the reports found, and whether they match.

Pure functions of the scenario (what was planted) and the reports (what the product found).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from feedback_loop.analysis import stats
from feedback_loop.simulate import Scenario


@dataclass(frozen=True)
class Verdict:
    truth: str
    planted: str
    found: str
    holds: bool


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ci(ci: Any, pct: bool = False, signed: bool = True) -> str:
    if not ci:
        return "[n/a]"
    low, high = ci
    if pct:
        return f"[{_pct(low)}, {_pct(high)}]"
    return f"[{low:+.3f}, {high:+.3f}]" if signed else f"[{low:.3f}, {high:.3f}]"


def cohort_rates(report: dict[str, Any], scenario: Scenario) -> Verdict:
    """Each cohort's feedback rate within 3 standard errors of the planted one, in the planted order."""
    found, holds = [], True
    for cohort in scenario.cohorts:
        entry = report["cohorts"].get(cohort.name)
        if not entry or not entry["requests"]:
            return Verdict("cohorts give feedback at different rates", "", f"no requests of {cohort.name}", False)
        rate, n = entry["rate"], entry["requests"]
        holds &= abs(rate - cohort.feedback_rate) <= 3 * math.sqrt(cohort.feedback_rate * (1 - cohort.feedback_rate) / n)
        found.append(f"{cohort.name} {_pct(rate)} {_ci(entry['rate_ci'], pct=True)} of {n:,}")
    planted_order = [c.name for c in sorted(scenario.cohorts, key=lambda c: c.feedback_rate)]
    found_order = sorted(planted_order, key=lambda name: report["cohorts"][name]["rate"])
    return Verdict("cohorts give feedback at different rates",
                   ", ".join(f"{c.name} {_pct(c.feedback_rate)}" for c in scenario.cohorts),
                   "; ".join(found), bool(holds and found_order == planted_order))


def cohort_satisfaction(report: dict[str, Any], scenario: Scenario, population: float) -> Verdict:
    """Satisfaction ordered by the cohorts' planted mood, and the re-weighted estimate closer to the
    whole population's satisfaction than the raw mean of those who answered."""
    planted_order = [c.name for c in sorted(scenario.cohorts, key=lambda c: c.mood)]
    satisfaction = {c: report["cohorts"].get(c, {}).get("satisfaction") for c in planted_order}
    if any(v is None for v in satisfaction.values()):
        return Verdict("cohorts are differently satisfied (selection bias)", "", "a cohort has no scores", False)
    found_order = sorted(planted_order, key=lambda c: satisfaction[c])
    weighting = report["weighting"]
    raw, weighted = weighting["unweighted_satisfaction"], weighting["weighted_satisfaction"]
    closer = weighted is not None and abs(weighted - population) < abs(raw - population)
    return Verdict(
        "cohorts are differently satisfied (selection bias)",
        f"mood {', '.join(f'{c.name} {c.mood:+.2f}' for c in scenario.cohorts)}; population satisfaction {population:.3f}",
        f"{', '.join(f'{c} {satisfaction[c]:.3f}' for c in planted_order)}; re-weighted {weighted:.3f} "
        f"vs raw {raw:.3f}",
        found_order == planted_order and closer)


def quality_of_all_traffic(report: dict[str, Any], population: float) -> Verdict:
    """The corrected quality of all traffic (PPI++ per cohort) holds the simulator's population
    mean human score in its interval, where the labelled-only mean's interval does not."""
    quality = report.get("quality") or {}
    corrected, labelled = quality.get("ppi_by_cohort") or {}, quality.get("labelled_only") or {}
    if not corrected.get("ci") or not labelled.get("ci"):
        return Verdict("the quality of all traffic, not only of the labelled share", f"{population:.3f}",
                       "not estimated", False)
    low, high = corrected["ci"]
    labelled_low, labelled_high = labelled["ci"]
    return Verdict(
        "the quality of all traffic, not only of the labelled share",
        f"population mean human score {population:.3f} (feedback mostly from happier cohorts)",
        f"corrected {corrected['estimate']:.3f} {_ci(corrected['ci'], signed=False)} over "
        f"{quality['requests']:,} requests; labelled only {labelled['mean']:.3f} {_ci(labelled['ci'], signed=False)} "
        f"over {quality['labelled']:,}",
        low <= population <= high and not labelled_low <= population <= labelled_high)


def miscalibrated(report: dict[str, Any], scenario: Scenario) -> Verdict:
    """The planted query type flagged, and no other."""
    flagged = [f for f in report["miscalibration"]["flagged_segments"] if f["field"] == "query_type"]
    values = sorted(f["value"] for f in flagged)
    detail = "; ".join(f"{f['value']}: disagreement {_pct(f['rate'])} vs {_pct(f['rest_rate'])} elsewhere "
                       f"(n={f['n']}, adjusted p={f['p_value_adjusted']:.1e})" for f in flagged)
    return Verdict("the evaluator is miscalibrated on one query type",
                   f"query_type={scenario.miscalibrated_query_type}: graded high whatever the quality",
                   f"flagged query types: {detail or 'none'}", values == [scenario.miscalibrated_query_type])


def _impact(report: dict[str, Any], change: str, metric: str) -> dict[str, Any] | None:
    return next((e for e in report["impact"] if e["change"] == change and e["metric"] == metric), None)


def real_change(report: dict[str, Any], scenario: Scenario, expected: float) -> Verdict:
    """The planted prompt change raises the human score significantly (after adjustment)."""
    name = scenario.changes()[0].name
    entry = _impact(report, name, "human_score")
    if entry is None or entry["diff"] is None:
        return Verdict(f"{name} has a real effect", "", "not measured", False)
    return Verdict(
        f"{name} has a real effect",
        f"+{scenario.effect_size:.2f} answer quality on {scenario.effect_query_type} "
        f"(about {expected:+.3f} human score)",
        f"human score {entry['diff']:+.3f} {_ci(entry['diff_ci'])}, adjusted p={entry['p_value_adjusted']:.1e}, "
        f"n={entry['before']['n']}+{entry['after']['n']}",
        bool(entry["significant"] and entry["diff"] > 0))


def null_change(report: dict[str, Any], scenario: Scenario) -> Verdict:
    """The planted no-op change is significant on no metric."""
    name = scenario.changes()[1].name
    entries = [e for e in report["impact"] if e["change"] == name]
    human = _impact(report, name, "human_score")
    significant = [e["metric"] for e in entries if e["significant"]]
    found = (f"human score {human['diff']:+.3f} {_ci(human['diff_ci'])}, adjusted p={human['p_value_adjusted']:.2f}; "
             if human and human["diff"] is not None else "")
    found += f"significant on: {', '.join(significant) or 'nothing'}"
    return Verdict(f"{name} has no effect", "no change in behaviour", found, bool(entries) and not significant)


def calibrated_judge(calibrator: dict[str, Any] | None) -> Verdict:
    """The judge's calibrator, learned on the earlier labels, is better calibrated than the raw grades
    on the later, held-out ones (the gate's figures), was approved, put in service, and the map the
    API serves is the one deployed."""
    truth = "a calibrator fixes the LLM judge's grades"
    planted = "the judge grades 1-10, overconfident; kind to summaries, harsh on Q&A, code high whatever"
    if calibrator is None:
        return Verdict(truth, planted, "no calibrator was trained", False)
    gate = calibrator["gate"]
    figures = gate["gate"]["figures"]
    raw, calibrated = figures["champion"]["ece"], figures["challenger"]["ece"]
    deployed, served = calibrator["deployed"], calibrator["served"]
    found = (f"held-out ECE {calibrated:.3f} vs the raw grades' {raw:.3f} (n={gate['gate']['n']}, "
             f"labels from {str((gate.get('split') or {}).get('cut', ''))[:16]}); log-loss gain "
             f"{_ci(figures.get('log_loss_improvement_ci'))}; {gate['status']}")
    if deployed:
        found += f", in service as map {deployed['map_id']}"
    if calibrator["applied"]:
        found += "; a grade of 8/10 means P(good) " + ", ".join(
            f"{query_type} {applied['p_good']:.2f}" for query_type, applied in calibrator["applied"].items())
    holds = (gate["status"] == "Approved" and deployed is not None and served == deployed["map_id"]
             and calibrated < raw)
    return Verdict(truth, planted, found, holds)


def retrained(gate: dict[str, Any] | None, deployed: dict[str, Any] | None) -> Verdict:
    """The challenger beat the champion on the same held-out labels, and was deployed."""
    if gate is None:
        return Verdict("the retrained evaluator beats the original on held-out labels",
                       "labels carry what the evaluator misses", "no challenger was gated", False)
    challenger, champion = gate["gate"]["challenger"], gate["gate"]["champion"]
    found = (f"held-out AUROC {challenger['auroc']:.3f} vs {champion['auroc']:.3f}, ECE {challenger['ece']:.3f} vs "
             f"{champion['ece']:.3f} (n={gate['gate']['n']}); {gate['status']}"
             + (f", deployed to {deployed['endpoint']}" if deployed else ", not deployed"))
    return Verdict("the retrained evaluator beats the original on held-out labels",
                   "labels carry what the evaluator misses", found,
                   gate["status"] == "Approved" and deployed is not None and challenger["auroc"] > champion["auroc"])


def live_comparison(labelled: list[dict[str, Any]], original: dict[str, float], threshold: float,
                    segment: str = "query_type") -> dict[str, Any]:
    """Both evaluators on the next week's binary human labels, which no model was trained on: AUROC
    each, and per segment how often each one's verdict contradicts the users, with an exact McNemar
    test of the difference (the same labels, so a paired test)."""
    rows = [r for r in labelled if r.get("human_label") in ("good", "bad") and r["request_id"] in original
            and r.get("overall") is not None]
    labels = np.array([r["human_label"] == "good" for r in rows])
    deployed_scores = np.array([r["overall"] for r in rows], float)
    original_scores = np.array([original[r["request_id"]] for r in rows], float)
    deployed, before = stats.auroc(deployed_scores, labels), stats.auroc(original_scores, labels)
    wrong_deployed = (deployed_scores > threshold) != labels
    wrong_original = (original_scores > threshold) != labels
    values = np.array([str((r.get("segments") or {}).get(segment)) for r in rows])
    by_segment = {}
    for value in sorted(set(values)):
        members = values == value
        fixed = int((wrong_original & ~wrong_deployed & members).sum())
        broken = int((~wrong_original & wrong_deployed & members).sum())
        by_segment[value] = {
            "n": int(members.sum()), "original_disagreement": float(wrong_original[members].mean()),
            "deployed_disagreement": float(wrong_deployed[members].mean()), "fixed": fixed, "broken": broken,
            "mcnemar_p": scipy_stats.binomtest(fixed, fixed + broken, 0.5).pvalue if fixed + broken else None}
    return {"n": len(rows), "threshold": threshold, "deployed": deployed.auroc, "deployed_ci": deployed.ci,
            "original": before.auroc, "original_ci": before.ci, "segment": segment, "by_segment": by_segment}


def next_week(comparison: dict[str, Any], scenario: Scenario, alpha: float = 0.05) -> Verdict:
    """On the following week's labels the deployed evaluator ranks better than the original would
    have, and contradicts users on the planted query type significantly less often."""
    deployed, original = comparison["deployed"], comparison["original"]
    planted = comparison["by_segment"].get(scenario.miscalibrated_query_type)
    if deployed is None or original is None or planted is None:
        return Verdict("the next week, scored by the deployed evaluator, agrees better with users",
                       f"{scenario.miscalibrated_query_type} fixed", "not measured", False)
    p = planted["mcnemar_p"]
    holds = (deployed > original and planted["deployed_disagreement"] < planted["original_disagreement"]
             and p is not None and p < alpha)
    found = (f"AUROC {deployed:.3f} {_ci(comparison['deployed_ci'], signed=False)} vs original {original:.3f} "
             f"{_ci(comparison['original_ci'], signed=False)} on {comparison['n']} new labels; on "
             f"{scenario.miscalibrated_query_type} it contradicts users {_pct(planted['deployed_disagreement'])} of the "
             f"time vs {_pct(planted['original_disagreement'])} (n={planted['n']}, McNemar p={p:.1e})")
    return Verdict("the next week, scored by the deployed evaluator, agrees better with users",
                   f"the retrained evaluator fixes {scenario.miscalibrated_query_type}", found, holds)


def collection(ledger: Any, stored: int, malformed_stored: int) -> Verdict:
    """Every acknowledged event is stored once; every malformed one is refused naming its field."""
    acknowledged = len(ledger.acknowledged)
    holds = (stored == acknowledged and malformed_stored == 0 and not ledger.refused_unexpectedly
             and ledger.malformed_refused == ledger.malformed_sent)
    return Verdict(
        "feedback arrives once, bad input is refused",
        f"{ledger.retried_batches} batches retried, {ledger.resent_events} events resent, "
        f"{ledger.malformed_sent} malformed",
        f"{acknowledged:,} acknowledged, {stored:,} stored ({ledger.duplicates:,} answered as duplicates); "
        f"{ledger.malformed_refused} malformed refused with the field named, {malformed_stored} stored",
        holds)
