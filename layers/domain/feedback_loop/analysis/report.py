"""The report and the datasets, from what one pass over the eval records collected."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from collections.abc import Iterable
from typing import Any

import numpy as np

from feedback_loop import scoring
from feedback_loop.analysis import sections, trends
from feedback_loop.analysis.calibrated import with_calibration
from feedback_loop.calibration.curves import CalibrationMap
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.models.changes import Change
from feedback_loop.analysis.model import (
    SCHEMA_VERSION,
    Analysis,
    AnalysisSettings,
    ChangeSides,
    Datasets,
    Pass,
    iso,
    run_name,
    split_of,
)


def report(project: str, collected: Pass, feedback: FeedbackIndex, sides: list[ChangeSides], since: datetime,
           until: datetime, settings: AnalysisSettings, skipped: Counter[str],
           generated_at: datetime | None = None, calibrator: tuple[CalibrationMap, str] | None = None) -> Analysis:
    """The report and the datasets from one pass's collection; with `calibrator` (a map and its
    id: the calibrator in service, or given), its `calibration` section (analysis/calibrated.py)."""
    window = (since.timestamp(), until.timestamp())
    span = settings.impact_window.total_seconds()
    fields = settings.segment_fields
    rows, read, in_window = collected.rows, collected.read, collected.in_window
    requests_with_feedback = collected.requests_with_feedback
    cohort_requests, cohort_feedback = collected.cohort_requests, collected.cohort_feedback
    cohort_contradictory = collected.cohort_contradictory

    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "project": project,
        "generated_at": iso((generated_at or datetime.now(timezone.utc)).timestamp()),
        "window": {"since": iso(window[0]), "until": iso(window[1])},
        "settings": {"threshold": settings.threshold, "segment_fields": list(fields),
                     "min_segment_n": settings.min_segment_n, "target_feedback_rate": settings.target_feedback_rate,
                     "trim_multiple": settings.trim_multiple, "impact_window_days": span / 86400,
                     "alpha": settings.alpha, "confidence": settings.confidence,
                     "system_field": settings.system_field, "group_field": settings.group_field},
        "counts": {
            "eval_records": in_window,
            "eval_records_read": read,
            "feedback_events": feedback.events,
            "requests_with_feedback": requests_with_feedback,
            "requests_with_human_score": len(rows),
            "orphan_feedback_requests": collected.orphan_requests,
            "orphan_feedback_events": collected.orphan_events,
            "outside_window_feedback_requests": collected.outside_requests,
            "outside_window_feedback_events": collected.outside_events,
            "skipped_lines": sum(v for k, v in skipped.items() if k != "outside_window")
            + sum(feedback.skipped.values()),
            "skipped_by_reason": dict(sorted((skipped + feedback.skipped).items())),
        },
    }
    overall = np.array(rows.overall, float)
    human = np.array(rows.human, float)
    cohorts, segments = rows.cohort, rows.segments
    good = human >= scoring.GOOD_AT
    binary = good | (human <= scoring.BAD_AT)
    verdict_good = overall > settings.threshold

    report["correlation"] = sections.correlations(overall, human, segments, fields, settings)
    report["quality"] = sections.quality(overall, human, cohorts, cohort_requests, collected.cohort_overall,
                                         collected.good_verdicts, settings)
    report["quality"]["segments"] = sections.quality_by_segment(overall, human, np.array(cohorts, dtype=object),
                                                                segments, collected.segment_cohorts,
                                                                sum(cohort_requests.values()), settings)
    report["meta_evaluation"] = sections.meta_evaluation(overall, human, segments, settings)
    report["meta_evaluation"]["raters"] = sections.raters(overall, rows.votes, settings)
    report["agreement"] = sections.agreement(overall[binary], good[binary], verdict_good[binary], settings)
    report["miscalibration"] = sections.miscalibration(verdict_good, good, binary, segments, fields, settings)
    weights_by_cohort, cohort_report = sections.cohorts(cohort_requests, cohort_feedback, cohort_contradictory, cohorts,
                                                human, settings)
    report["cohorts"] = cohort_report
    weights = np.array([weights_by_cohort.get(c, 0.0) for c in cohorts], float)
    report["weighting"] = sections.weighting(overall, human, weights, settings)
    report["impact"], report["regressions"] = sections.impact(sides, settings)

    splits = [split_of(request_id, settings.validation_share) for request_id in rows.request_id]
    disagreeing = np.flatnonzero(binary & (verdict_good != good)).tolist()
    datasets = Datasets(rows, fields, verdict_good, disagreeing, weights, splits)
    report["datasets"] = {"disagreements": len(disagreeing), "labelled": len(rows),
                          "labelled_binary": int(binary.sum()), "validation": splits.count("validation")}
    analysis = Analysis(report, datasets)
    if calibrator is not None:
        with_calibration(analysis, *calibrator, collected)
    with_trends(report, [], change_marks(s.change for s in sides))
    return analysis


def change_marks(changes: Iterable[Change]) -> list[dict[str, Any]]:
    """The registered changes as the trends put them on the time axis."""
    return [{"name": c.name, "effective_at": iso(c.effective_at.timestamp())} for c in changes]


def with_trends(report: dict[str, Any], previous: list[dict[str, Any]], changes: list[dict[str, Any]],
                run: str | None = None) -> None:
    """The report's trends from the previous weeks' points (trends.point) and the registered changes
    (`name`, `effective_at`), and its findings, which name a drop in agreement first. `run`: this
    report's folder (default: its window end, as the scheduled runs name it)."""
    until = datetime.fromisoformat(report["window"]["until"].replace("Z", "+00:00"))
    report["trends"] = trends.trends(report, run or run_name(until), previous, changes)
    report["findings"] = sections.findings(report)
