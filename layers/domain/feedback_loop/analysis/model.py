"""What the analysis's parts share: its settings, the per-record rules (fields, cohorts, the
train/validation split), what a pass over the eval records collects (Pass, and the sides of each
registered change), and the result (Analysis).

The data flows one way: sources (evallogs, feedback) -> a pass (engine: record by record; columnar:
DuckDB) -> Pass -> report (sections, statistics) -> files (run).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from feedback_loop.analysis.evallogs import EvalRecord
from feedback_loop.analysis.feedback import RequestFeedback
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


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Side:
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
        return {"n": n, "mean": mean, "start": iso(self.first), "end": iso(self.last)}


@dataclass
class ChangeSides:
    """A change's two sides, with its time range and segment test prepared once."""

    change: Change
    window: tuple[float, float]
    span: float
    control: Side = field(default_factory=Side)
    treatment: Side = field(default_factory=Side)

    def __post_init__(self) -> None:
        effective = self.change.effective_at.timestamp()
        self.effective = effective
        self.low, self.high = ((max(effective, self.window[0]), self.window[1]) if self.change.variant_field
                               else (effective - self.span, effective + self.span))
        self.segment = list((self.change.segment or {}).items())

    def side_for(self, record: EvalRecord) -> Side | None:
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
    orphan_requests: int = 0  # requests with feedback that no eval record read matched
    orphan_events: int = 0  # and their feedback events
    # (record, human score, users, cohort, segment values, implicit score), in the order read
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def change_sides(changes: list[Change], since: datetime, until: datetime, settings: AnalysisSettings
                 ) -> list[ChangeSides]:
    window = (since.timestamp(), until.timestamp())
    return [ChangeSides(c, window, settings.impact_window.total_seconds()) for c in changes]


