"""report.json `calibration`: the evaluator's raw score and the calibrator's calibrated score side by
side on the window's labelled requests (docs/REPORT.md), when a calibrator is in service (the weekly
run) or given (`feedback-loop analyze --calibration-map FILE`).

The map is applied to each labelled request's raw `overall` and segment values as the API applies
it (CalibrationMap.apply). Both scores are judged against the same binary human labels, with the
functions every other figure of the report uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from feedback_loop import scoring
from feedback_loop.analysis import stats
from feedback_loop.analysis.model import Analysis
from feedback_loop.calibration.curves import UNKNOWN, CalibrationMap
from feedback_loop.calibration.fit import figures


def section(analysis: Analysis, calibration_map: CalibrationMap, map_id: str, threshold: float,
            minimum: int) -> dict[str, Any]:
    """The `calibration` section of the analysis's report (its labelled rows, in the order read)."""
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
        "threshold": {"raw": threshold, "p_good_at_raw_threshold": calibration_map.apply(threshold, {})["p_good"]},
        "by_segment": {}}
    for name in positions:
        column = np.array([v[name] for v in values], dtype=object)
        for value in sorted(set(column[binary].tolist())):
            member = binary & (column == value)
            if member.sum() < minimum:
                continue
            raw, mapped = stats.calibration(overall[member], good[member]), stats.calibration(calibrated[member], good[member])
            out["by_segment"].setdefault(name, {})[str(value)] = {
                "n": int(member.sum()), "ece_raw": raw.ece, "ece_calibrated": mapped.ece,
                "brier_raw": raw.brier, "brier_calibrated": mapped.brier}
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
    return out


def with_calibration(analysis: Analysis, calibration_map: CalibrationMap, map_id: str) -> None:
    """Adds the section to the analysis's report (the report's own threshold and segment minimum)."""
    settings = analysis.report["settings"]
    analysis.report["calibration"] = section(analysis, calibration_map, map_id, settings["threshold"],
                                             settings["min_segment_n"])
