"""The report's sections, each computed from the arrays and counters the analysis pass collected."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from feedback_loop import scoring
from feedback_loop.analysis import stats

from feedback_loop.analysis.model import AnalysisSettings, ChangeSides, Side

def correlation_block(x: np.ndarray, y: np.ndarray, confidence: float) -> dict[str, Any]:
    return {"n": len(x), "pearson": asdict(stats.pearson(x, y, confidence)),
            "spearman": asdict(stats.spearman(x, y, confidence)),
            "kendall": asdict(stats.kendall_tau_b(x, y, confidence))}


def groups(segments: list[tuple[str, ...]], position: int) -> dict[str, np.ndarray]:
    indices: dict[str, list[int]] = defaultdict(list)
    for i, values in enumerate(segments):
        indices[values[position]].append(i)
    return {value: np.array(members, int) for value, members in sorted(indices.items())}


def segment_fields(segments: list[tuple[str, ...]], fields: tuple[str, ...], members: np.ndarray | None = None
                   ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Each field's groups of the requests in `members` (all if None), and the fields that say
    nothing there: one value for every request (a field no record has is `unknown` for all)."""
    chosen = [segments[i] for i in members] if members is not None else segments
    index = members if members is not None else np.arange(len(segments))
    found, skipped = {}, {}
    for position, name in enumerate(fields):
        by_value = {value: index[group] for value, group in groups(chosen, position).items()}
        if len(by_value) == 1:
            [value] = by_value
            skipped[name] = f"every request has the same value ({value})"
        elif by_value:
            found[name] = by_value
    return found, skipped


def segments_summary(by_segment: dict[str, dict[str, Any]], skipped: dict[str, str], settings: AnalysisSettings
                     ) -> dict[str, Any]:
    """How many segments a section tested, how many were too small and the minimum used."""
    entries = [entry for values in by_segment.values() for entry in values.values()]
    small = [entry for entry in entries if entry["insufficient"]]
    return {"minimum_n": settings.min_segment_n, "tested": len(entries) - len(small), "too_small": len(small),
            "too_small_requests": sum(entry["n"] for entry in small), "fields_not_segmented": skipped}


def correlations(overall: np.ndarray, human: np.ndarray, segments: list[tuple[str, ...]],
                  fields: tuple[str, ...], settings: AnalysisSettings) -> dict[str, Any]:
    by_segment: dict[str, dict[str, Any]] = {}
    found, skipped = segment_fields(segments, fields)
    for name, by_value in found.items():
        by_segment[name] = {}
        for value, members in by_value.items():
            if len(members) < settings.min_segment_n:
                by_segment[name][value] = {"n": len(members), "insufficient": True}
            else:
                by_segment[name][value] = {**correlation_block(overall[members], human[members], settings.confidence),
                                           "insufficient": False}
    return {"overall": correlation_block(overall, human, settings.confidence), "by_segment": by_segment,
            "segments": segments_summary(by_segment, skipped, settings),
            "x": "eval_scores.overall", "y": "human_score"}


def meta_evaluation(overall: np.ndarray, human: np.ndarray, segments: list[tuple[str, ...]],
                    settings: AnalysisSettings) -> dict[str, Any]:
    """The figures evaluator builders compare (docs/REPORT.md): system-level correlation over the
    values of `system_field`, and the correlation within each value of `group_field`, averaged."""
    def values(name: str | None) -> np.ndarray | None:
        if not name:
            return None
        position = settings.read_fields.index(name)
        return np.array([row[position] for row in segments], dtype=object)

    system, group = values(settings.system_field), values(settings.group_field)
    return {
        "system_field": settings.system_field, "group_field": settings.group_field,
        "system_level": None if system is None else stats.system_level(
            overall, human, system, group, settings.bootstrap_resamples, settings.confidence),
        "grouped": None if group is None else stats.grouped(overall, human, group),
    }


def ppi_all_alike(y: np.ndarray, predicted: np.ndarray, cohort_sums: dict[str, tuple[float, float]],
                  total_requests: int, confidence: float) -> stats.PpiMean:
    """PPI++ of the mean of y over every request alike (valid if the labelled requests are a random
    sample), from the predictor on the labelled requests and its sum and sum of squares over every
    request of each cohort (the unlabelled requests' are those less the labelled ones')."""
    all_sum = sum(t for t, _ in cohort_sums.values())
    all_squares = sum(q for _, q in cohort_sums.values())
    return stats.ppi_mean(y, predicted, total_requests - len(y), all_sum - float(predicted.sum()),
                          all_squares - float((predicted**2).sum()), confidence)


def ppi_by_cohort(y: np.ndarray, predicted: np.ndarray, cohort_array: np.ndarray, requests: Counter[str],
                  cohort_sums: dict[str, tuple[float, float]], confidence: float) -> dict[str, Any]:
    """PPI++ of the mean of y within each cohort, combined by the cohorts' shares of the requests;
    `predicted`: the predictor on the labelled requests, `cohort_sums`: its sum and sum of squares
    over every request of each cohort."""
    strata = {}
    for name in requests:
        members = cohort_array == name
        total, squares = cohort_sums.get(name, (0.0, 0.0))
        strata[name] = stats.Stratum(y[members], predicted[members], requests[name], total, squares)
    mean = stats.stratified_ppi_mean(strata, confidence)
    mean.pop("parts")  # for differences of two such means (impact), not a figure
    return mean


def quality_by_segment(overall: np.ndarray, human: np.ndarray, cohort_array: np.ndarray,
                       segments: list[tuple[str, ...]], segment_cohorts: dict[tuple[int, str], dict[str, tuple]],
                       total_requests: int, settings: AnalysisSettings) -> dict[str, Any]:
    """The quality of all traffic per segment value with at least min_segment_n labelled requests
    (the pass counts them): within the value, PPI++ per cohort combined by the value's cohort shares,
    for the mean human score and the share of good answers, beside the labelled-only figures."""
    fields = settings.read_fields
    good = (human >= scoring.GOOD_AT).astype(float)
    by_segment: dict[str, dict[str, Any]] = {}
    columns: dict[int, np.ndarray] = {}
    for (position, value), parts in sorted(segment_cohorts.items()):
        if position not in columns:
            columns[position] = np.array([row[position] for row in segments], dtype=object)
        members = columns[position] == value
        requests = Counter({cohort: p[0] for cohort, p in parts.items()})
        sums = {cohort: (p[1], p[2]) for cohort, p in parts.items()}
        mean, share = (ppi_by_cohort(y[members], overall[members], cohort_array[members], requests, sums,
                                     settings.confidence) for y in (human, good))
        by_segment.setdefault(fields[position], {})[value] = {
            "requests": sum(p[0] for p in parts.values()), "labelled": int(members.sum()),
            "estimate": mean["estimate"], "ci": mean["ci"], "se": mean["se"],
            "cohorts_without_labels": mean["cohorts_without_labels"],
            "good_share": share["estimate"], "good_share_ci": share["ci"],
            "labelled_only": float(human[members].mean()), "labelled_good_share": float(good[members].mean())}
    # a field whose one value holds every request says nothing the overall figure does not
    alike = [field for field, values in by_segment.items()
             if len(values) == 1 and next(iter(values.values()))["requests"] == total_requests]
    return {"minimum_n": settings.min_segment_n, "fields_not_segmented": {f: "one value for every request"
                                                                          for f in alike},
            "by_segment": {field: values for field, values in by_segment.items() if field not in alike}}


def quality(overall: np.ndarray, human: np.ndarray, cohorts_of_rows: list[str], requests: Counter[str],
            cohort_overall: dict[str, tuple[float, float]], good_verdicts: int, settings: AnalysisSettings
            ) -> dict[str, Any]:
    """The mean human score over every request of the window, not only the labelled ones: the
    evaluator's scores on all requests corrected by the human labels (PPI++), over all requests
    (valid if the labelled requests are a random sample of them) and per cohort, combined by the
    cohorts' shares of the requests (valid if, within a cohort, who gives feedback does not depend
    on the answer's quality); beside them the labelled-only mean and the evaluator's own mean. The
    same for the share of good answers (a human score of GOOD_AT or more), and the evaluator's
    verdict rate corrected with its error rates (pass_rate)."""
    cohort_array = np.array(cohorts_of_rows, dtype=object)
    total_requests = sum(requests.values())
    all_sum = sum(t for t, _ in cohort_overall.values())
    n = len(human)
    overall_ppi = ppi_all_alike(human, overall, cohort_overall, total_requests, settings.confidence)
    labelled = human.mean() if n else None
    labelled_se = float(human.std(ddof=1)) / math.sqrt(n) if n > 1 else None
    z = stats._z(settings.confidence)
    good = (human >= scoring.GOOD_AT).astype(float)
    return {
        "estimand": "mean human score (0-1) over every request in the window",
        "requests": total_requests, "labelled": n,
        "ppi": asdict(overall_ppi),
        "ppi_by_cohort": ppi_by_cohort(human, overall, cohort_array, requests, cohort_overall, settings.confidence),
        "labelled_only": {"mean": None if labelled is None else float(labelled),
                          "ci": None if labelled_se is None else
                          (float(labelled) - z * labelled_se, float(labelled) + z * labelled_se)},
        "evaluator_only": {"mean": all_sum / total_requests if total_requests else None,
                           "note": "the evaluator's own mean score, on its scale"},
        "good_share": {"estimand": f"share of requests whose human score is {scoring.GOOD_AT} or more",
                       "ppi_by_cohort": ppi_by_cohort(good, overall, cohort_array, requests, cohort_overall,
                                                      settings.confidence),
                       "labelled_only": float(good.mean()) if n else None},
        "pass_rate": _pass_rate(overall, human, good_verdicts, total_requests, settings),
    }


def _pass_rate(overall: np.ndarray, human: np.ndarray, good_verdicts: int, requests: int,
               settings: AnalysisSettings) -> dict[str, Any]:
    """The share of good answers over every request from the evaluator's verdicts (overall above
    the threshold), corrected with its sensitivity and specificity against the binary human labels."""
    good, bad = human >= scoring.GOOD_AT, human <= scoring.BAD_AT
    verdict = overall > settings.threshold
    corrected = stats.rogan_gladen(good_verdicts, requests, int((good & verdict).sum()), int(good.sum()),
                                   int((bad & ~verdict).sum()), int(bad.sum()), settings.confidence)
    labelled = int(good.sum()) + int(bad.sum())
    return {**asdict(corrected), "labelled_share_good": good.sum() / labelled if labelled else None}


def raters(overall: np.ndarray, votes: list[tuple[float, ...] | None], settings: AnalysisSettings
           ) -> dict[str, Any]:
    """Agreement between users who rated the same request (each user's latest vote, 0-1), and the
    evaluator set beside them as one more annotator."""
    units = [v for v in votes if v is not None]
    return {"requests_rated_twice": len(units),
            "alpha_ordinal": stats.krippendorff_alpha(units, "ordinal", settings.bootstrap_resamples,
                                                      settings.confidence),
            "alpha_interval": stats.krippendorff_alpha(units, "interval", settings.bootstrap_resamples,
                                                       settings.confidence),
            "evaluator_as_annotator": stats.as_another_annotator(votes, overall, settings.bootstrap_resamples,
                                                                 settings.confidence)}


def agreement(overall: np.ndarray, good: np.ndarray, verdict_good: np.ndarray, settings: AnalysisSettings
               ) -> dict[str, Any]:
    calibration = stats.calibration(overall, good, settings.calibration_bins)
    return {"n": len(overall), "n_good": int(good.sum()), "n_bad": int((~good).sum()),
            "threshold": settings.threshold,
            "auroc": asdict(stats.auroc(overall, good, settings.confidence)),
            "cohen_kappa": asdict(stats.cohen_kappa(verdict_good, good, settings.confidence)),
            "ece": calibration.ece, "brier": calibration.brier, "binning": calibration.binning,
            "reliability_bins": [asdict(b) for b in calibration.bins]}


def miscalibration(verdict_good: np.ndarray, good: np.ndarray, binary: np.ndarray,
                    segments: list[tuple[str, ...]], fields: tuple[str, ...], settings: AnalysisSettings
                    ) -> dict[str, Any]:
    disagree = binary & (verdict_good != good)
    n, k = int(binary.sum()), int(disagree.sum())
    overall_rate = stats.wilson(k, n, settings.confidence)
    by_segment: dict[str, dict[str, Any]] = {}
    tests: list[tuple[str, str]] = []
    p_values: list[float | None] = []
    found, skipped = segment_fields(segments, fields, np.flatnonzero(binary))
    for name, by_value in found.items():
        by_segment[name] = {}
        for value, members in by_value.items():
            n_s, k_s = len(members), int(disagree[members].sum())
            entry: dict[str, Any] = {"n": n_s, "disagreements": k_s}
            if n_s < settings.min_segment_n:
                entry["insufficient"] = True
            else:
                rate = stats.wilson(k_s, n_s, settings.confidence)
                rest = stats.two_proportions(k - k_s, n - n_s, k_s, n_s, settings.confidence, alternative="greater")
                entry.update({"insufficient": False, "rate": rate.rate, "rate_ci": rate.ci,
                              "rest_rate": rest.mean_control, "diff_vs_rest": rest.diff,
                              "diff_vs_rest_ci": rest.diff_ci, "p_value": rest.p_value})
                tests.append((name, value))
                p_values.append(rest.p_value)
            by_segment[name][value] = entry
    flagged = []
    for (name, value), adjusted in zip(tests, stats.benjamini_hochberg(p_values)):
        entry = by_segment[name][value]
        entry["p_value_adjusted"] = adjusted
        entry["flagged"] = adjusted is not None and adjusted < settings.alpha
        if entry["flagged"]:
            flagged.append({"field": name, "value": value, "n": entry["n"], "rate": entry["rate"],
                            "rate_ci": entry["rate_ci"], "rest_rate": entry["rest_rate"],
                            "p_value_adjusted": adjusted})
    too_high = int((binary & verdict_good & ~good).sum())
    return {"threshold": settings.threshold, "n": n, "disagreements": k, "rate": overall_rate.rate,
            "rate_ci": overall_rate.ci, "evaluator_too_high": too_high, "evaluator_too_low": k - too_high,
            "test": "one-sided two-proportion z-test of each segment against the rest, Benjamini-Hochberg",
            "by_segment": by_segment, "segments": segments_summary(by_segment, skipped, settings),
            "flagged_segments": sorted(flagged, key=lambda f: f["p_value_adjusted"])}


def cohorts(requests: Counter[str], with_feedback: Counter[str], contradictory: Counter[str], cohorts: list[str],
             human: np.ndarray, settings: AnalysisSettings) -> tuple[dict[str, float], dict[str, Any]]:
    labelled = Counter(cohorts)
    weights = stats.inverse_propensity_weights(dict(requests), dict(labelled), settings.trim_multiple)
    report = {}
    for cohort in sorted(requests):
        rate = stats.wilson(with_feedback[cohort], requests[cohort], settings.confidence)
        scores = human[[i for i, c in enumerate(cohorts) if c == cohort]]
        report[cohort] = {
            "requests": requests[cohort], "with_feedback": with_feedback[cohort], "rate": rate.rate,
            "rate_ci": rate.ci, "below_target": rate.rate is not None and rate.rate < settings.target_feedback_rate,
            "with_human_score": int(labelled[cohort]), "weight": weights.get(cohort),
            "satisfaction": float(scores.mean()) if len(scores) else None,
            "contradictory": contradictory[cohort],
        }
    return weights, report


def weighting(overall: np.ndarray, human: np.ndarray, weights: np.ndarray, settings: AnalysisSettings
               ) -> dict[str, Any]:
    if len(human) == 0:
        return {"n": 0, "kish_ess": 0.0, "unweighted_satisfaction": None, "weighted_satisfaction": None,
                "trim_multiple": settings.trim_multiple, "weighted_correlation": None}
    return {"n": len(human), "kish_ess": stats.kish_ess(weights), "trim_multiple": settings.trim_multiple,
            "unweighted_satisfaction": float(human.mean()),
            "weighted_satisfaction": float(np.average(human, weights=weights)) if weights.sum() > 0 else None,
            "weighted_correlation": asdict(stats.weighted_pearson(overall, human, weights, settings.confidence)),
            "method": "inverse propensity of having a human score, per cohort, trimmed"}


METRICS = ("evaluator_overall", "human_score", "human_score_all_traffic", "thumbs_up_share", "feedback_rate")
HUMAN_METRICS = ("human_score", "human_score_all_traffic")
HUMAN_LABELS = {"human_score": "the human score of the labelled requests",
                "human_score_all_traffic": "the human score of all traffic"}


def all_traffic(side: Side, confidence: float, lam: float | None = None) -> dict[str, Any]:
    """The mean human score over every request of a side (not only the labelled ones): PPI++ per
    cohort from the evaluator's scores, combined by the side's cohort shares (sections.quality);
    with lam = 0 the labels alone, re-weighted by the same shares."""
    return stats.stratified_ppi_mean(
        {name: stats.Stratum(np.array(part.human, float), np.array(part.overall, float), part.requests,
                             part.overall_sum, part.overall_sq) for name, part in side.cohorts.items()},
        confidence, lam)


def _all_traffic(c: Side, t: Side, confidence: float) -> tuple[stats.Comparison, float | None, dict[str, Any]]:
    """The change in the mean human score over all traffic (PPI++ per cohort on each side), and
    the same estimand from the labels alone (re-weighted by cohort), to show what the evaluator's
    scores add."""
    pc, pt = all_traffic(c, confidence), all_traffic(t, confidence)
    df = stats.welch_satterthwaite(pc["parts"] + pt["parts"])
    result = stats.normal_difference(pc["estimate"], pc["se"], len(c.human), pt["estimate"], pt["se"], len(t.human),
                                     confidence, "ppi++_by_cohort_z" if df is None else "ppi++_by_cohort_t", df)
    missing = sorted({*pc["cohorts_without_labels"], *pt["cohorts_without_labels"]})
    if missing:
        result = replace(result, note=f"too few labels on a side in cohort {', '.join(missing)}")
    lc, lt = all_traffic(c, confidence, 0.0), all_traffic(t, confidence, 0.0)
    alone = stats.normal_difference(lc["estimate"], lc["se"], len(c.human), lt["estimate"], lt["se"], len(t.human),
                                    confidence, df=stats.welch_satterthwaite(lc["parts"] + lt["parts"]))
    return result, df, {"diff": alone.diff, "diff_ci": alone.diff_ci,
                    "note": "the same estimand from the labels alone, re-weighted by the cohorts' shares"}


def impact(sides: list[ChangeSides], settings: AnalysisSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries: list[dict[str, Any]] = []
    for change_sides in sides:
        change, c, t = change_sides.change, change_sides.control, change_sides.treatment
        ab = bool(change.variant_field)
        names = ("control", "treatment") if ab else ("before", "after")
        srm = asdict(stats.sample_ratio_mismatch(c.requests, t.requests)) if ab else None
        for metric in METRICS:
            if metric == "evaluator_overall":
                (n_c, m_c, v_c), (n_t, m_t, v_t) = c.overall_stats(), t.overall_stats()
                result = stats.welch(n_c, m_c, v_c, n_t, m_t, v_t, settings.confidence)
            elif metric == "human_score":
                n_c, m_c, v_c = stats.mean_and_variance(np.array(c.human))
                n_t, m_t, v_t = stats.mean_and_variance(np.array(t.human))
                result = stats.welch(n_c, m_c, v_c, n_t, m_t, v_t, settings.confidence)
            elif metric == "human_score_all_traffic":
                result, df, labels_alone = _all_traffic(c, t, settings.confidence)
            elif metric == "thumbs_up_share":
                result = stats.two_proportions(c.thumbs_up, c.thumbs, t.thumbs_up, t.thumbs, settings.confidence)
            else:
                result = stats.two_proportions(c.with_feedback, c.requests, t.with_feedback, t.requests,
                                               settings.confidence)
            entry = {
                "change": change.name, "metric": metric, "design": "ab" if ab else "before_after",
                "segment": change.segment,
                names[0]: c.summary(result.n_control, mean(result.mean_control)),
                names[1]: t.summary(result.n_treatment, mean(result.mean_treatment)),
                "diff": result.diff, "diff_ci": result.diff_ci, "relative": result.relative,
                "relative_ci": result.relative_ci, "p_value": result.p_value, "test": result.test,
                "effect_size": result.effect_size, "effect_size_name": result.effect_size_name,
                "note": result.note,
            }
            if metric == "human_score_all_traffic":
                entry[names[0]]["requests"], entry[names[1]]["requests"] = c.requests, t.requests
                entry["estimand"] = "mean human score over every request of each side (n: labelled requests)"
                entry["labels_alone"] = labels_alone
                entry["df"] = df  # the t test's degrees of freedom; None: the z-test (every cohort large)
            if srm is not None:
                entry["sample_ratio"] = srm
            entries.append(entry)
    for entry, adjusted in zip(entries, stats.benjamini_hochberg([e["p_value"] for e in entries])):
        entry["p_value_adjusted"] = adjusted
        entry["p_value_adjustment"] = "benjamini_hochberg over every impact test in the report"
        entry["significant"] = adjusted is not None and adjusted < settings.alpha
    regressions = [{"change": e["change"], "metric": e["metric"], "diff": e["diff"], "diff_ci": e["diff_ci"],
                    "p_value_adjusted": e["p_value_adjusted"]}
                   for e in entries if e["metric"] in HUMAN_METRICS and e["significant"] and e["diff"] < 0]
    return entries, regressions


def mean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _ci_text(ci: Any) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "(no interval)"


def findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What needs attention this week, most important first, each naming the report section it
    comes from: regressions, segments where the evaluator disagrees with users, A/B sample ratio
    mismatches, then improvements, cohorts below the target feedback rate, segments too small to
    test, and skipped input lines."""
    found: list[dict[str, Any]] = []

    def add(level: str, section: str, text: str) -> None:
        found.append({"level": level, "section": section, "text": text})

    drop = (report.get("trends") or {}).get("drop") or {}
    for name, test in drop.get("metrics", {}).items():
        if test["flagged"]:
            label = {"auroc": "AUROC", "kendall": "Kendall's tau-b"}[name]
            add("attention", "trends", f"The evaluator's agreement with users dropped: {label} {test['current']:.3f} "
                f"against {test['trailing']:.3f} over the previous {test['weeks']} weeks (one-sided p "
                f"{test['p_value']:.2g}, flagged below {drop['alpha'] / len(drop['metrics']):.3g}).")
    for r in report["regressions"]:
        add("attention", "impact", f"{r['change']} lowered {HUMAN_LABELS[r['metric']]} by {-r['diff']:.3f} "
            f"{_ci_text(r['diff_ci'])} (adjusted p {r['p_value_adjusted']:.2g}).")
    for f in report["miscalibration"]["flagged_segments"]:
        add("attention", "miscalibration", f"The evaluator disagrees with users on {f['field']} = {f['value']}: "
            f"{f['rate']:.1%} of {f['n']} labelled requests against {f['rest_rate']:.1%} elsewhere "
            f"(adjusted p {f['p_value_adjusted']:.2g}).")
    mismatched: set[str] = set()
    for e in report["impact"]:
        ratio = e.get("sample_ratio")
        if ratio and ratio.get("mismatch") and e["change"] not in mismatched:
            mismatched.add(e["change"])
            add("attention", "impact", f"{e['change']}: the A/B arms' sizes ({ratio['n_control']} / "
                f"{ratio['n_treatment']}) are not the expected split; its effects may be biased.")
    for e in report["impact"]:
        if e["metric"] in HUMAN_METRICS and e["significant"] and e["diff"] > 0:
            add("note", "impact", f"{e['change']} raised {HUMAN_LABELS[e['metric']]} by {e['diff']:.3f} "
                f"{_ci_text(e['diff_ci'])} "
                f"(adjusted p {e['p_value_adjusted']:.2g}).")
    low = [name for name, c in report["cohorts"].items() if c.get("below_target")]
    if low:
        add("note", "cohorts", f"Feedback rate below the {report['settings']['target_feedback_rate']:.0%} target in "
            f"cohort{'s' if len(low) > 1 else ''} {', '.join(low)}: their weights correct for it, with less precision.")
    summary = report["miscalibration"].get("segments") or {}
    if summary.get("too_small"):
        add("note", "miscalibration", f"{summary['too_small']} segment{'s' if summary['too_small'] > 1 else ''} "
            f"({summary['too_small_requests']} labelled requests) had fewer than {summary['minimum_n']} labelled "
            f"requests and could not be tested; {summary['tested']} were.")
    skipped = report["counts"]["skipped_lines"]
    if skipped:
        reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["counts"]["skipped_by_reason"].items()
                            if k != "outside_window")
        add("note", "data-quality", f"{skipped} input line{'s' if skipped > 1 else ''} skipped ({reasons}).")
    return found
