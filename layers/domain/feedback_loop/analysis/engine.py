"""The pass over the eval records in Python, record by record: a dictionary look-up and a few counter
updates per record; rows are kept only for requests with a human score, so memory grows with the
feedback, not with the logs. (analysis/columnar.py collects the same in DuckDB.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from feedback_loop.analysis.evallogs import EvalRecord
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.model import (
    UNKNOWN,
    Analysis,
    AnalysisSettings,
    ChangeSides,
    Pass,
    change_sides,
    cohort_of,
    field_value,
)
from feedback_loop.analysis.report import report
from feedback_loop.models.changes import Change


def scan(records: Iterable[EvalRecord], feedback: FeedbackIndex, sides: list[ChangeSides],
         window: tuple[float, float], fields: tuple[str, ...], skipped: Counter[str]) -> Pass:
    """The pass in Python, record by record."""
    result = Pass()
    matched: set[str] = set()
    for record in records:
        result.read += 1
        request_feedback = feedback.requests.get(record.request_id)
        if request_feedback is not None:
            if record.request_id in matched:
                skipped["duplicate_request_id"] += 1
                continue
            matched.add(record.request_id)
        for change in sides:
            side = change.side_for(record)
            if side is not None:
                side.add(record, request_feedback)
        if not window[0] <= record.at < window[1]:
            continue
        result.in_window += 1
        cohort = cohort_of(record.raw, request_feedback)
        result.cohort_requests[cohort] += 1
        if request_feedback is None:
            continue
        result.requests_with_feedback += 1
        if request_feedback.explicit:
            result.cohort_feedback[cohort] += 1
        if request_feedback.contradictory:
            result.cohort_contradictory[cohort] += 1
        human = request_feedback.human()
        if human.value is None:
            continue
        segments = tuple(cohort if f == "user_cohort" else (field_value(record.raw, f) or UNKNOWN) for f in fields)
        output = record.raw.get("output")
        implicit = request_feedback.implicit(output if isinstance(output, str) else None)
        result.rows.append((record, human.value, human.n_users, cohort, segments, implicit.value))
    orphans = [r for r in feedback.requests if r not in matched]
    result.orphan_requests = len(orphans)
    result.orphan_events = sum(feedback.requests[r].events for r in orphans)
    return result


def analyse(project: str, records: Iterable[EvalRecord], feedback: FeedbackIndex, changes: list[Change],
            since: datetime, until: datetime, settings: AnalysisSettings | None = None,
            skipped: Counter[str] | None = None, generated_at: datetime | None = None) -> Analysis:
    """The analysis with the pass in Python (records from any iterable)."""
    settings = settings or AnalysisSettings()
    skipped = skipped if skipped is not None else Counter()
    sides = change_sides(changes, since, until, settings)
    collected = scan(records, feedback, sides, (since.timestamp(), until.timestamp()), settings.segment_fields,
                     skipped)
    return report(project, collected, feedback, sides, since, until, settings, skipped, generated_at)


