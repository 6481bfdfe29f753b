"""Trends across weeks: each week's key figures (its `trend.json`, written beside its report), the
weeks of a project side by side, and a test for a drop in the evaluator's agreement with users.

A week's point is taken from its report.json (`point`), so reports written before trend.json
existed still count. The weeks shown are the previous runs of the project whose windows do not
overlap (a run again of the same window replaces it; a hand-run window that overlaps a later one
is left out), at most HISTORY_WEEKS of them, then this week.

The drop test (`drop_test`): for AUROC and Kendall's tau-b (on Fisher's z scale), this week's value
against the trailing k weeks' values (k up to TRAILING_WEEKS, at least MIN_TRAILING_WEEKS): their
random-effects mean (DerSimonian-Laird: the weeks' own variation beyond their sampling error, tau^2,
counts as noise, so a metric that wanders from week to week does not alarm), t = (this week -
trailing mean) / sqrt(se^2 + tau^2 + se(mean)^2), one-sided, against Student's t with k - 1 degrees
of freedom (the mean and tau^2 come from k weeks; the normal reference alarmed in 8% of weeks whose
agreement wandered). Each metric is flagged below alpha / 2 (Bonferroni over the two), so a week
whose agreement is as in the trailing weeks raises the alarm with probability at most alpha
(tests/unit/test_trends.py: 1% of stable weeks, 4% of wandering ones, 97% of halved separations).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from scipy import stats as scipy_stats

from feedback_loop.analysis import stats

TREND_JSON = "trend.json"
REPORT_JSON = "report.json"
HISTORY_WEEKS = 26
TRAILING_WEEKS = 8
MIN_TRAILING_WEEKS = 3
METRICS = ("auroc", "kendall")
METHOD = ("one-sided, against the random-effects (DerSimonian-Laird) mean of the trailing weeks, Student's t with "
          "weeks - 1 df; AUROC as is and Kendall's tau-b on Fisher's z scale; each metric flagged below alpha/2 "
          "(Bonferroni over the two)")


def _ci_se(ci: Any, confidence: float) -> float | None:
    return (ci[1] - ci[0]) / (2 * stats._z(confidence)) if ci else None


def _auroc(auroc: dict[str, Any], confidence: float) -> dict[str, Any]:
    value, ci = auroc.get("auroc"), auroc.get("ci")
    se = auroc.get("se")
    if se is None and value is not None and ci and 0 < ci[0] and ci[1] < 1:  # reports before `se`: the interval
        se = _ci_se(ci, confidence)
    return {"value": value, "ci": ci, "se": se, "n": auroc.get("n")}


def _kendall(kendall: dict[str, Any], confidence: float) -> dict[str, Any]:
    """tau-b with its se on Fisher's z scale, where its interval is symmetric (stats.kendall_tau_b)."""
    value, ci = kendall.get("r"), kendall.get("ci")
    se_z = None
    if value is not None and ci and -1 < ci[0] and ci[1] < 1:
        se_z = _ci_se((math.atanh(ci[0]), math.atanh(ci[1])), confidence)
    return {"value": value, "ci": ci, "se_z": se_z, "n": kendall.get("n")}


def _estimate(block: dict[str, Any] | None, key: str = "estimate") -> dict[str, Any]:
    block = block or {}
    return {"value": block.get(key), "ci": block.get("ci")}


def point(report: dict[str, Any], run: str) -> dict[str, Any]:
    """One week's figures from its report: the corrected quality of all traffic (and the labelled
    mean beside it), the evaluator's agreement (AUROC, Kendall's tau-b, with what the drop test
    needs), the feedback rate per cohort, and the registered changes in its window."""
    confidence = report["settings"].get("confidence", 0.95)
    quality = report.get("quality") or {}
    cohorts = report.get("cohorts") or {}
    requests = sum(c["requests"] for c in cohorts.values())
    with_feedback = sum(c["with_feedback"] for c in cohorts.values())
    return {
        "run": run, "since": report["window"]["since"], "until": report["window"]["until"],
        "requests": report["counts"]["eval_records"], "labelled": report["counts"]["requests_with_human_score"],
        "quality": _estimate(quality.get("ppi_by_cohort")),
        "labelled_quality": _estimate(quality.get("labelled_only"), "mean"),
        "good_share": _estimate((quality.get("good_share") or {}).get("ppi_by_cohort")),
        "auroc": _auroc(report["agreement"]["auroc"], confidence),
        "kendall": _kendall(report["correlation"]["overall"]["kendall"], confidence),
        "feedback_rate": with_feedback / requests if requests else None,
        "feedback_rate_by_cohort": {name: {"rate": c["rate"], "ci": c["rate_ci"], "requests": c["requests"]}
                                    for name, c in cohorts.items()},
        "changes": sorted({e["change"] for e in report.get("impact", [])}),
    }


def load_point(run: str, read: Callable[[str], str | bytes | None]) -> dict[str, Any] | None:
    """A run's point from its folder: its trend.json, else its report.json (a run written before
    trend.json existed); None with neither. `read(name)` gives a file's text, None when it is absent;
    an unreadable file raises ValueError, KeyError or TypeError. The point's `run` is the folder's."""
    text = read(TREND_JSON)
    if text is not None:
        found = json.loads(text)
    else:
        text = read(REPORT_JSON)
        if text is None:
            return None
        found = point(json.loads(text), run)
    found["run"] = run
    return found


def weeks(previous: list[dict[str, Any]], current: dict[str, Any]) -> list[dict[str, Any]]:
    """The previous points that come before this week without overlapping it or each other (the
    latest run of a window first), at most HISTORY_WEEKS, oldest first; then this week."""
    kept: list[dict[str, Any]] = []
    start = current["since"]
    for p in sorted(previous, key=lambda p: (p["until"], p["since"]), reverse=True):
        if p["until"] <= start and len(kept) < HISTORY_WEEKS:
            kept.append(p)
            start = p["since"]
    return [*reversed(kept), current]


def _scale(metric: str, entry: dict[str, Any]) -> tuple[float, float] | None:
    """(value, se) on the test's scale, or None when the week has no figure."""
    if entry.get("value") is None:
        return None
    if metric == "kendall":
        se = entry.get("se_z")
        return None if se is None or abs(entry["value"]) >= 1 else (math.atanh(entry["value"]), se)
    se = entry.get("se")
    return None if se is None else (entry["value"], se)


def random_effects(values: list[float], ses: list[float]) -> tuple[float, float, float]:
    """DerSimonian-Laird: the mean, its variance and the between-week variance tau^2."""
    weights = [1 / se**2 if se > 0 else 1e12 for se in ses]
    fixed = sum(w * v for w, v in zip(weights, values)) / sum(weights)
    q = sum(w * (v - fixed) ** 2 for w, v in zip(weights, values))
    c = sum(weights) - sum(w**2 for w in weights) / sum(weights)
    tau2 = max(0.0, (q - (len(values) - 1)) / c) if c > 0 else 0.0
    re_weights = [1 / (se**2 + tau2) if se**2 + tau2 > 0 else 1e12 for se in ses]
    mean = sum(w * v for w, v in zip(re_weights, values)) / sum(re_weights)
    return mean, 1 / sum(re_weights), tau2


def drop_test(trailing: list[dict[str, Any]], current: dict[str, Any], alpha: float) -> dict[str, Any]:
    """This week's agreement against the trailing weeks' (module docstring)."""
    result: dict[str, Any] = {"method": METHOD, "alpha": alpha, "trailing_weeks": TRAILING_WEEKS, "metrics": {}}
    for metric in METRICS:
        now = _scale(metric, current[metric])
        before = [s for s in (_scale(metric, p[metric]) for p in trailing[-TRAILING_WEEKS:]) if s is not None]
        if now is None or len(before) < MIN_TRAILING_WEEKS:
            result["metrics"][metric] = {"tested": False, "weeks": len(before), "flagged": False,
                                         "note": f"needs this week's figure and {MIN_TRAILING_WEEKS} previous weeks'"}
            continue
        mean, mean_variance, tau2 = random_effects([v for v, _ in before], [se for _, se in before])
        t = (now[0] - mean) / math.sqrt(now[1] ** 2 + tau2 + mean_variance)
        p = float(scipy_stats.t.cdf(t, len(before) - 1))
        back = math.tanh if metric == "kendall" else (lambda v: v)
        result["metrics"][metric] = {"tested": True, "weeks": len(before), "current": current[metric]["value"],
                                     "trailing": back(mean), "tau2": tau2, "t": t, "p_value": p,
                                     "flagged": p < alpha / len(METRICS)}
    result["flagged"] = any(m["flagged"] for m in result["metrics"].values())
    return result


def _week_of(moment: str, shown: list[dict[str, Any]]) -> str | None:
    return next((w["until"] for w in shown if w["since"] <= moment < w["until"]), None)


def trends(report: dict[str, Any], run: str, previous: list[dict[str, Any]], changes: list[dict[str, Any]]
           ) -> dict[str, Any]:
    """The report's `trends` section: the weeks (oldest first, this week last), the registered
    changes (`name`, `effective_at`) that fall in them with the week each falls in, and the drop
    test."""
    current = point(report, run)
    shown = weeks(previous, current)
    in_range = sorted(({"name": c["name"], "effective_at": c["effective_at"], "week": _week_of(c["effective_at"], shown)}
                       for c in changes if shown[0]["since"] <= c["effective_at"] < current["until"]),
                      key=lambda c: (c["effective_at"], c["name"]))
    return {"weeks": shown, "changes": in_range, "history_weeks": HISTORY_WEEKS,
            "drop": drop_test(shown[:-1], current, report["settings"]["alpha"])}


def dumps(report: dict[str, Any]) -> bytes:
    """trend.json: this week's point."""
    return json.dumps(report["trends"]["weeks"][-1], default=str).encode()
