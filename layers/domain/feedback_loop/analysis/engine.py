"""The weekly analysis: one pass over the eval logs, joined to the feedback index, then statistics.

Per eval record the pass does a dictionary look-up and a few counter updates; arrays are kept only
for requests with a human score, so memory grows with the feedback, not with the logs.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from feedback_loop import scoring
from feedback_loop.analysis import sections
from feedback_loop.analysis.evallogs import EvalRecord
from feedback_loop.analysis.feedback import FeedbackIndex, RequestFeedback
from feedback_loop.models.changes import Change

SCHEMA_VERSION = 1
UNKNOWN = "unknown"


@dataclass(frozen=True)
class AnalysisSettings:
    threshold: float = 0.7  # evaluator verdict: good if overall > threshold
    segment_fields: tuple[str, ...] = ("user_cohort", "query_type", "prompt_version", "model")
    min_segment_n: int = 30
    target_feedback_rate: float = 0.05
    trim_multiple: float = 20.0
    impact_window: timedelta = timedelta(days=7)
    alpha: float = 0.05
    confidence: float = 0.95
    validation_share: float = 0.2
    calibration_bins: int = 10


def field_value(raw: dict[str, Any], name: str) -> str | None:
    """An eval-log field by name: `metadata.x` or a top-level field, else metadata's."""
    metadata = raw.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if name.startswith("metadata."):
        value = metadata.get(name.removeprefix("metadata."))
    elif name in raw and not isinstance(raw[name], (dict, list)):
        value = raw[name]
    else:
        value = metadata.get(name)
    return None if value is None or isinstance(value, (dict, list)) else str(value)


def cohort_of(raw: dict[str, Any], feedback: RequestFeedback | None) -> str:
    """The eval log's metadata.user_cohort, else the feedback's user_cohort, else unknown."""
    metadata = raw.get("metadata")
    cohort = metadata.get("user_cohort") if type(metadata) is dict else None
    if type(cohort) is str and cohort:  # the common case, checked first: this runs once per record
        return cohort
    return field_value(raw, "metadata.user_cohort") or (feedback.user_cohort if feedback else None) or UNKNOWN


def split_of(request_id: str, validation_share: float) -> str:
    """Stable train/validation split by a hash of the request_id: the same request always lands
    on the same side, whichever week it is read in."""
    bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return "validation" if bucket < validation_share else "train"


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class _Side:
    """Sufficient statistics of one side of a comparison."""

    requests: int = 0
    with_feedback: int = 0
    overall_n: int = 0
    overall_sum: float = 0.0
    overall_sq: float = 0.0
    human: list[float] = field(default_factory=list)
    thumbs_up: int = 0
    thumbs: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, record: EvalRecord, feedback: RequestFeedback | None) -> None:
        self.requests += 1
        self.overall_n += 1
        self.overall_sum += record.overall
        self.overall_sq += record.overall * record.overall
        self.first = record.at if self.first is None else min(self.first, record.at)
        self.last = record.at if self.last is None else max(self.last, record.at)
        if feedback is not None:
            self.with_feedback += feedback.explicit > 0
            self.thumbs_up += feedback.thumbs_up
            self.thumbs += feedback.thumbs_up + feedback.thumbs_down
            score = feedback.human().value
            if score is not None:
                self.human.append(score)

    def overall_stats(self) -> tuple[int, float, float]:
        n = self.overall_n
        if n == 0:
            return 0, math.nan, math.nan
        mean = self.overall_sum / n
        variance = max(0.0, (self.overall_sq - n * mean * mean) / (n - 1)) if n > 1 else math.nan
        return n, mean, variance

    def summary(self, n: int, mean: float | None) -> dict[str, Any]:
        return {"n": n, "mean": mean, "start": _iso(self.first), "end": _iso(self.last)}


@dataclass
class _ChangeSides:
    """A change's two sides, with its time range and segment test prepared once."""

    change: Change
    window: tuple[float, float]
    span: float
    control: _Side = field(default_factory=_Side)
    treatment: _Side = field(default_factory=_Side)

    def __post_init__(self) -> None:
        effective = self.change.effective_at.timestamp()
        self.effective = effective
        self.low, self.high = ((max(effective, self.window[0]), self.window[1]) if self.change.variant_field
                               else (effective - self.span, effective + self.span))
        self.segment = list((self.change.segment or {}).items())

    def side_for(self, record: EvalRecord) -> _Side | None:
        at = record.at
        if not self.low <= at < self.high:  # the cheap test first: most records are outside
            return None
        for key, expected in self.segment:
            if field_value(record.raw, key) != expected:
                return None
        change = self.change
        if change.variant_field:
            arm = field_value(record.raw, change.variant_field)
            return self.control if arm == change.control else self.treatment if arm == change.treatment else None
        return self.control if at < self.effective else self.treatment


@dataclass
class Analysis:
    report: dict[str, Any]
    disagreements: list[dict[str, Any]]
    labelled: list[dict[str, Any]]


def read_range(since: datetime, until: datetime, changes: list[Change], settings: AnalysisSettings
               ) -> tuple[datetime, list[Change]]:
    """Changes measured in this report, and from when eval logs must be read for them.

    A before/after change is measured while its after-window overlaps the report's window (so a
    change of late last week is measured again with a full week after it); an A/B change while it
    has started by the end of the window.
    """
    measured = sorted((c for c in changes
                       if c.effective_at < until and (c.variant_field or c.effective_at + settings.impact_window > since)),
                      key=lambda c: (c.effective_at, c.name))  # the report's order never depends on the input's
    starts = [c.effective_at - settings.impact_window for c in measured if not c.variant_field]
    return min([since, *starts]), measured


@dataclass
class Pass:
    """What one pass over the eval records collects, whichever engine made it: the counts over all
    records, and the rows of the requests with a human score in the window."""

    read: int = 0
    in_window: int = 0
    requests_with_feedback: int = 0
    cohort_requests: Counter[str] = field(default_factory=Counter)
    cohort_feedback: Counter[str] = field(default_factory=Counter)
    cohort_contradictory: Counter[str] = field(default_factory=Counter)
    matched: set[str] = field(default_factory=set)  # requests with feedback that an eval record matched
    # (record, human score, users, cohort, segment values, implicit score), in the order read
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def scan(records: Iterable[EvalRecord], feedback: FeedbackIndex, sides: list[_ChangeSides],
         window: tuple[float, float], fields: tuple[str, ...], skipped: Counter[str]) -> Pass:
    """The pass in Python, record by record."""
    result = Pass()
    matched = result.matched
    for record in records:
        result.read += 1
        request_feedback = feedback.requests.get(record.request_id)
        if request_feedback is not None:
            if record.request_id in matched:
                skipped["duplicate_request_id"] += 1
                continue
            matched.add(record.request_id)
        for change_sides in sides:
            side = change_sides.side_for(record)
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
    return result


def change_sides(changes: list[Change], since: datetime, until: datetime, settings: AnalysisSettings
                 ) -> list[_ChangeSides]:
    window = (since.timestamp(), until.timestamp())
    return [_ChangeSides(c, window, settings.impact_window.total_seconds()) for c in changes]


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


def report(project: str, collected: Pass, feedback: FeedbackIndex, sides: list[_ChangeSides], since: datetime,
           until: datetime, settings: AnalysisSettings, skipped: Counter[str],
           generated_at: datetime | None = None) -> Analysis:
    """The report and the datasets from one pass's collection."""
    window = (since.timestamp(), until.timestamp())
    span = settings.impact_window.total_seconds()
    fields = settings.segment_fields
    matched, rows, read, in_window = collected.matched, collected.rows, collected.read, collected.in_window
    requests_with_feedback = collected.requests_with_feedback
    cohort_requests, cohort_feedback = collected.cohort_requests, collected.cohort_feedback
    cohort_contradictory = collected.cohort_contradictory

    orphans = [r for r in feedback.requests if r not in matched]
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "project": project,
        "generated_at": _iso((generated_at or datetime.now(timezone.utc)).timestamp()),
        "window": {"since": _iso(window[0]), "until": _iso(window[1])},
        "settings": {"threshold": settings.threshold, "segment_fields": list(fields),
                     "min_segment_n": settings.min_segment_n, "target_feedback_rate": settings.target_feedback_rate,
                     "trim_multiple": settings.trim_multiple, "impact_window_days": span / 86400,
                     "alpha": settings.alpha, "confidence": settings.confidence},
        "counts": {
            "eval_records": in_window,
            "eval_records_read": read,
            "feedback_events": feedback.events,
            "requests_with_feedback": requests_with_feedback,
            "requests_with_human_score": len(rows),
            "orphan_feedback_requests": len(orphans),
            "orphan_feedback_events": sum(feedback.requests[r].events for r in orphans),
            "skipped_lines": sum(v for k, v in skipped.items() if k != "outside_window")
            + sum(feedback.skipped.values()),
            "skipped_by_reason": dict(sorted((skipped + feedback.skipped).items())),
        },
    }
    overall = np.array([r[0].overall for r in rows], float)
    human = np.array([r[1] for r in rows], float)
    cohorts = [r[3] for r in rows]
    segments = [r[4] for r in rows]
    good = human >= scoring.GOOD_AT
    binary = good | (human <= scoring.BAD_AT)
    verdict_good = overall > settings.threshold

    report["correlation"] = sections.correlations(overall, human, segments, fields, settings)
    report["agreement"] = sections.agreement(overall[binary], good[binary], verdict_good[binary], settings)
    report["miscalibration"] = sections.miscalibration(verdict_good, good, binary, segments, fields, settings)
    weights_by_cohort, cohort_report = sections.cohorts(cohort_requests, cohort_feedback, cohort_contradictory, cohorts,
                                                human, settings)
    report["cohorts"] = cohort_report
    weights = np.array([weights_by_cohort.get(c, 0.0) for c in cohorts], float)
    report["weighting"] = sections.weighting(overall, human, weights, settings)
    report["impact"], report["regressions"] = sections.impact(sides, settings)

    disagreements, labelled = [], []
    for i, (record, score, n_users, cohort, segment_values, implicit) in enumerate(rows):
        label = scoring.human_label(score)
        entry = {
            "request_id": record.request_id, "timestamp": _iso(record.at), "prompt": record.raw.get("prompt"),
            "output": record.raw.get("output"), "overall": record.overall,
            "verdict": "good" if verdict_good[i] else "bad", "human_score": score, "human_label": label,
            "n_users": n_users, "implicit_score": implicit, "cohort": cohort,
            "segments": dict(zip(fields, segment_values)),
        }
        if binary[i] and bool(verdict_good[i]) != bool(good[i]):
            disagreements.append({**entry, "direction": "evaluator_too_high" if verdict_good[i] else "evaluator_too_low"})
        labelled.append({**entry, "weight": float(weights[i]), "split": split_of(record.request_id,
                                                                                 settings.validation_share)})
    report["datasets"] = {"disagreements": len(disagreements), "labelled": len(labelled),
                          "labelled_binary": int(binary.sum()),
                          "validation": sum(e["split"] == "validation" for e in labelled)}
    return Analysis(report, disagreements, labelled)
