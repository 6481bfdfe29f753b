"""report.json `calibration`: the evaluator's raw score and the calibrator's calibrated score side by
side on the window's labelled requests (docs/REPORT.md), when a calibrator is in service (the weekly
run) or given (`feedback-loop analyze --calibration-map FILE`).

The map is applied to each labelled request's raw `overall` and segment values as the API applies
it (CalibrationMap.apply). Both scores are judged against the same binary human labels, with the
functions every other figure of the report uses.

When the pass applied the map to every request too (queries.calibrated_cohorts), the quality of all
traffic is estimated again with the calibrated predictors (PPI++ per cohort: the expected human
score for the mean human score, p_good for the share of good answers), and, when the map was learned
only from labels older than the window (so the window's labels, which the rectifier uses, did not
shape the predictor), those figures become the report's `quality` headline, the raw predictor's kept
beside them.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np

from feedback_loop import scoring
from feedback_loop.analysis import sections, stats
from feedback_loop.analysis.model import Analysis, Pass
from feedback_loop.calibration.curves import UNKNOWN, CalibrationMap
from feedback_loop.calibration.fit import figures


def _width(estimate: dict[str, Any] | None) -> float | None:
    ci = (estimate or {}).get("ci")
    return None if ci is None else float(ci[1] - ci[0])


def _narrower(raw: dict[str, Any] | None, calibrated: dict[str, Any] | None) -> dict[str, Any]:
    """The widths of two intervals of the same estimand and how much narrower the calibrated one is
    (1 - calibrated / raw: 0.2 is 20% narrower; negative: wider)."""
    before, after = _width(raw), _width(calibrated)
    return {"raw": before, "calibrated": after,
            "narrower_by": None if before is None or after is None or before == 0 else 1 - after / before}


def labels_before(calibration_map: CalibrationMap, since: str) -> tuple[bool, str]:
    """Whether the map was learned only from labels older than the window's start (its
    `trained.until`, the time of its latest training label), and why not."""
    until = calibration_map.trained.get("until")
    try:
        last = datetime.fromisoformat(str(until).replace("Z", "+00:00"))
        start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        if last.tzinfo is None or start.tzinfo is None:
            raise ValueError("a time without its zone")
    except (TypeError, ValueError):
        return False, "the map does not say when its training labels end (trained.until)"
    if last >= start:
        return False, (f"the map was learned from labels up to {until}, inside this window: its labels would "
                       "both shape the predictor and correct it")
    return True, f"the map was learned from labels up to {until}, before this window"


def quality(analysis: Analysis, collected: Pass, calibration_map: CalibrationMap, p_good: np.ndarray,
            expected: np.ndarray, confidence: float) -> dict[str, Any]:
    """The quality of all traffic with the calibrated predictors, beside the raw predictor's
    (`report.quality`), from the labelled rows' calibrated figures and the pass's sums."""
    rows, raw = analysis.datasets.rows, analysis.report["quality"]
    sums = collected.cohort_calibrated or {}
    cohort_array = np.array(rows.cohort, dtype=object)
    human = np.array(rows.human, float)
    good = (human >= scoring.GOOD_AT).astype(float)
    requests = collected.cohort_requests
    expected_sums = {c: (s[2], s[3]) for c, s in sums.items()}
    mean = sections.ppi_by_cohort(human, expected, cohort_array, requests, expected_sums, confidence)
    share = sections.ppi_by_cohort(good, p_good, cohort_array, requests,
                                   {c: (s[0], s[1]) for c, s in sums.items()}, confidence)
    overall = sections.ppi_all_alike(human, expected, expected_sums, sum(requests.values()), confidence)
    used, why = labels_before(calibration_map, analysis.report["window"]["since"])
    return {"predictors": {"mean human score": "expected_human", "good share": "p_good"},
            "ppi": asdict(overall),
            "ppi_by_cohort": mean, "good_share": {"ppi_by_cohort": share},
            "ci_width": _narrower(raw["ppi_by_cohort"], mean),
            "good_share_ci_width": _narrower(raw["good_share"]["ppi_by_cohort"], share),
            "headline": used, "why": why}


def section(analysis: Analysis, calibration_map: CalibrationMap, map_id: str, threshold: float,
            minimum: int, collected: Pass | None = None, confidence: float = 0.95) -> dict[str, Any]:
    """The `calibration` section of the analysis's report (its labelled rows, in the order read);
    with the pass's calibrated sums (`collected.cohort_calibrated`), its `quality`."""
    rows, fields = analysis.datasets.rows, analysis.datasets.fields
    overall, human = np.array(rows.overall, float), np.array(rows.human, float)
    positions = {name: fields.index(name) for name in calibration_map.fields if name in fields}
    values = [{name: segment[positions[name]] if name in positions else UNKNOWN for name in calibration_map.fields}
              for segment in rows.segments]
    applied = [calibration_map.apply(score, own) for score, own in zip(overall.tolist(), values)]
    calibrated = np.array([a["p_good"] for a in applied], float)
    good, binary = human >= scoring.GOOD_AT, (human >= scoring.GOOD_AT) | (human <= scoring.BAD_AT)
    y = good[binary].astype(float)
    out: dict[str, Any] = {
        "map_id": map_id, "method": calibration_map.p_good.method, "fields": list(calibration_map.fields),
        "fields_not_in_the_analysis": [f for f in calibration_map.fields if f not in fields],
        "n": int(binary.sum()), "raw": figures(overall[binary], y, bins=True),
        "calibrated": figures(calibrated[binary], y, bins=True),
        "threshold": {"raw": threshold, "p_good_at_raw_threshold": calibration_map.apply(threshold, {})["p_good"],
                      "raw_at_even_odds": calibration_map.p_good.lowest_score_for(0.5, {})},
        "by_segment": {}}
    for name in positions:
        column = np.array([v[name] for v in values], dtype=object)
        for value in sorted(set(column[binary].tolist())):
            member = binary & (column == value)
            if member.sum() < minimum:
                continue
            raw, mapped = stats.calibration(overall[member], good[member]), stats.calibration(calibrated[member], good[member])
            own = {name: str(value)}  # the map's other fields unknown
            out["by_segment"].setdefault(name, {})[str(value)] = {
                "n": int(member.sum()), "ece_raw": raw.ece, "ece_calibrated": mapped.ece,
                "brier_raw": raw.brier, "brier_calibrated": mapped.brier,
                "p_good_at_raw_threshold": calibration_map.apply(threshold, own)["p_good"],
                "raw_at_even_odds": calibration_map.p_good.lowest_score_for(0.5, own)}
    if calibration_map.escalation:
        review = np.array([a["needs_review"] for a in applied], bool)
        alone = binary & ~review
        agree = ((calibrated >= 0.5) == good)[alone]
        out["escalation"] = {"alpha": calibration_map.escalation.get("alpha"),
                             "delta": calibration_map.escalation.get("delta"),
                             "threshold": calibration_map.escalation.get("threshold"),
                             "needs_review_share": float(review.mean()) if len(review) else None,
                             "decided_alone": int(alone.sum()),
                             "agreement_decided_alone": float(agree.mean()) if len(agree) else None}
    if out["calibrated"]["ece"] is not None:  # None: no binary label
        out["ece_change"] = out["calibrated"]["ece"] - out["raw"]["ece"]
    if collected is not None and collected.cohort_calibrated is not None:
        expected = np.array([a["expected_human"] for a in applied], float)
        out["quality"] = quality(analysis, collected, calibration_map, calibrated, expected, confidence)
    return out


def with_calibration(analysis: Analysis, calibration_map: CalibrationMap, map_id: str,
                     collected: Pass | None = None) -> None:
    """Adds the section to the analysis's report (the report's own threshold, segment minimum and
    confidence); with the pass's calibrated sums, the calibrated quality of all traffic, which becomes
    the `quality` headline when the map's labels are older than the window (the raw predictor's
    figures then under `quality.raw_predictor`)."""
    settings = analysis.report["settings"]
    found = section(analysis, calibration_map, map_id, settings["threshold"], settings["min_segment_n"], collected,
                    settings["confidence"])
    analysis.report["calibration"] = found
    calibrated = found.get("quality")
    if calibrated and calibrated["headline"]:
        headline = analysis.report["quality"]
        headline["raw_predictor"] = {"ppi": headline["ppi"], "ppi_by_cohort": headline["ppi_by_cohort"],
                                     "good_share": {"ppi_by_cohort": headline["good_share"]["ppi_by_cohort"]}}
        headline["predictor"] = f"calibrated ({map_id})"
        headline["ppi"], headline["ppi_by_cohort"] = calibrated["ppi"], calibrated["ppi_by_cohort"]
        headline["good_share"]["ppi_by_cohort"] = calibrated["good_share"]["ppi_by_cohort"]
