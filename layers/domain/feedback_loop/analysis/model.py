"""What the analysis's parts share: its settings, the train/validation split, what the pass over
the eval records collects (Pass, and the sides of each registered change), and the result
(Analysis).

The data flows one way: sources (evallogs, feedback) -> the pass in DuckDB (columnar) -> Pass ->
report (sections, statistics) -> files (run).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from feedback_loop import scoring
from feedback_loop.models.changes import Change
from feedback_loop.models.evallog import MAX_FIELD_DEPTH
from feedback_loop.models.strict_json import nesting_depth

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
    system_field: str | None = None  # the model or system: system-level correlation (meta_evaluation)
    group_field: str | None = None  # the source prompt or document: grouped correlation (meta_evaluation)
    bootstrap_resamples: int = 1000

    @property
    def read_fields(self) -> tuple[str, ...]:
        """The eval-log fields the pass reads for each labelled request: the segment fields first
        (the sections take the first positions), then the system and group fields."""
        return tuple(dict.fromkeys([*self.segment_fields, *(f for f in (self.system_field, self.group_field) if f)]))


def split_of(request_id: str, validation_share: float) -> str:
    """Stable train/validation split by a hash of the request_id: the same request always lands
    on the same side, whichever week it is read in."""
    bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return "validation" if bucket < validation_share else "train"


def run_name(until: datetime) -> str:
    """A window's end as the key of its run: the feedback export's partition, the reports' folder."""
    return until.astimezone(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class CohortPart:
    """One cohort's part of a side: its requests, the sum and the sum of squares of their overall
    scores, and its labelled requests' human and overall scores (paired, in the order read)."""

    requests: int
    overall_sum: float
    overall_sq: float
    human: list[float]
    overall: list[float]


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
    cohorts: dict[str, CohortPart] = field(default_factory=dict)

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


class Texts:
    """A column of texts (or None) kept in a temporary file, not in memory: the labelled requests'
    ids, prompts and outputs, most of the rows' bytes (about 100 MB a million rows for the ids
    alone as Python strings), are appended once as the pass reads them and read back when the
    splits are drawn and the datasets written: by index, or in order (in blocks)."""

    BLOCK = 1 << 20  # bytes read at a time in order

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._starts = array("q")  # each text's offset in the file, -1 for None
        self._lengths = array("q")
        self._size = 0
        self._flushed = True

    def append(self, text: str | None) -> None:
        self._append_bytes(None if text is None else text.encode())

    def _append_bytes(self, data: bytes | None) -> None:
        if data is None:
            self._starts.append(-1)
            self._lengths.append(0)
            return
        self._file.write(data)
        self._starts.append(self._size)
        self._lengths.append(len(data))
        self._size += len(data)
        self._flushed = False

    def __getitem__(self, index: int) -> str | None:
        start = self._starts[index]
        if start < 0:
            return None
        self._flush()
        return os.pread(self._file.fileno(), self._lengths[index], start).decode()

    def select(self, indices: Iterable[int]) -> Iterator[str | None]:
        """The texts at `indices`, which go up: read in blocks, as the file holds them in order."""
        self._flush()
        block, block_start = b"", 0
        for index in indices:
            start, length = self._starts[index], self._lengths[index]
            if start < 0:
                yield None
                continue
            if start < block_start or start + length > block_start + len(block):
                block, block_start = os.pread(self._file.fileno(), max(self.BLOCK, length), start), start
            yield block[start - block_start:start - block_start + length].decode()

    def __iter__(self) -> Iterator[str | None]:
        return self.select(range(len(self)))

    def __len__(self) -> int:
        return len(self._starts)

    def reorder(self, order: Iterable[int]) -> None:
        """The texts in the order of the indices `order`, written again in that order (so that
        reading them in order stays a read of the file from start to end)."""
        self._flush()
        old, starts, lengths = self._file, self._starts, self._lengths
        self._file, self._starts, self._lengths, self._size = tempfile.TemporaryFile(), array("q"), array("q"), 0
        for index in order:
            self._append_bytes(None if starts[index] < 0 else os.pread(old.fileno(), lengths[index], starts[index]))
        old.close()

    def _flush(self) -> None:
        if not self._flushed:
            self._file.flush()
            self._flushed = True

    def close(self) -> None:
        self._file.close()


@dataclass
class Rows:
    """The requests with a human score in the window, in the order read, as columns: numbers in
    arrays (8 bytes a value), cohorts and segment tuples as one shared object per distinct value, the
    ids, prompts and outputs in files (Texts); not a tuple, a record and a parsed dict per row."""

    request_id: Texts = field(default_factory=Texts)
    at: array = field(default_factory=lambda: array("d"))  # the eval record's time, epoch seconds
    overall: array = field(default_factory=lambda: array("d"))
    human: array = field(default_factory=lambda: array("d"))
    n_users: array = field(default_factory=lambda: array("q"))
    votes: list[tuple[float, ...] | None] = field(default_factory=list)  # each user's vote, where several voted
    comments: list[tuple[str, ...] | None] = field(default_factory=list)  # each user's latest comment, if any
    cohort: list[str] = field(default_factory=list)
    segments: list[tuple[str, ...]] = field(default_factory=list)  # per row, the segment fields' values
    implicit: array = field(default_factory=lambda: array("d"))  # NaN: no implicit score
    prompt: Texts = field(default_factory=Texts)  # the record's prompt and output as JSON text
    output: Texts = field(default_factory=Texts)

    def __len__(self) -> int:
        return len(self.request_id)

    def reorder(self, order: Any) -> None:
        """Every column in the order of the indices `order`."""
        for name in ("at", "overall", "human", "n_users", "implicit"):
            column = getattr(self, name)
            setattr(self, name, array(column.typecode, (column[i] for i in order)))
        self.cohort = [self.cohort[i] for i in order]
        self.votes = [self.votes[i] for i in order]
        self.comments = [self.comments[i] for i in order]
        self.segments = [self.segments[i] for i in order]
        for texts in (self.request_id, self.prompt, self.output):
            texts.reorder(order)


@dataclass
class Datasets:
    """The labelled and disagreement datasets of an analysis, made entry by entry as they are read
    (the files are written as streams: no list of every entry is held)."""

    rows: Rows
    fields: tuple[str, ...]
    verdict_good: Any  # per row, numpy booleans: the evaluator's verdict is good
    disagreeing: list[int]  # the rows where a binary human label and the evaluator's verdict disagree
    weights: Any  # per row, the cohort weight
    splits: list[str]

    def _entries(self, indices: range | list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
        """The entries of the rows at `indices` (which go up), their texts read in order."""
        rows = self.rows
        texts = zip(rows.request_id.select(indices), rows.prompt.select(indices), rows.output.select(indices))
        for i, (request_id, prompt, output) in zip(indices, texts):
            score = rows.human[i]
            yield i, {
                "request_id": request_id, "timestamp": iso(rows.at[i]), "prompt": _json(prompt),
                "output": _json(output), "overall": rows.overall[i],
                "verdict": "good" if self.verdict_good[i] else "bad", "human_score": score,
                "human_label": scoring.human_label(score), "n_users": rows.n_users[i],
                "implicit_score": _number(rows.implicit[i]),
                "cohort": rows.cohort[i], "segments": dict(zip(self.fields, rows.segments[i])),
            }

    def labelled(self) -> Iterator[dict[str, Any]]:
        for i, entry in self._entries(range(len(self.rows))):
            yield {**entry, "weight": float(self.weights[i]), "split": self.splits[i]}

    def disagreements(self) -> Iterator[dict[str, Any]]:
        for i, entry in self._entries(self.disagreeing):
            yield self._disagreement(i, entry)

    def _disagreement(self, i: int, entry: dict[str, Any]) -> dict[str, Any]:
        return {**entry, "direction": "evaluator_too_high" if self.verdict_good[i] else "evaluator_too_low",
                "comments": list(self.rows.comments[i] or ())}

    def examples(self, field: str, value: str, threshold: float, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """The disagreements of the requests whose `field` is `value`: how many, and the `limit` the
        evaluator was surest of (its score farthest from the threshold, on the wrong side; equal
        distances by request id, so the same ones whatever the order read), as disagreements()
        gives them, surest first."""
        if field not in self.fields:
            return 0, []
        position = self.fields.index(field)
        members = [i for i in self.disagreeing if self.rows.segments[i][position] == value]
        ids = dict(zip(members, self.rows.request_id.select(members)))
        ranked = sorted(members, key=lambda i: (-abs(self.rows.overall[i] - threshold), ids[i] or ""))[:limit]
        chosen = dict(self._entries(sorted(ranked)))
        return len(members), [self._disagreement(i, chosen[i]) for i in ranked]

    def scatter(self) -> list[tuple[float, float]]:
        """(evaluator's overall score, human score) of every labelled request, for the report's plot."""
        return list(zip(self.rows.overall, self.rows.human))


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _json(text: str | None) -> Any:
    """A prompt or output as its JSON value; one nested deeper than the contract allows (written to
    S3 by hand: the API refuses it) stays its JSON text, which every JSON writer and reader can take."""
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # nested past orjson's own limit
        return text
    return value if nesting_depth(value, stop_above=MAX_FIELD_DEPTH) <= MAX_FIELD_DEPTH else text


@dataclass
class Analysis:
    report: dict[str, Any]
    datasets: Datasets

    @property
    def labelled(self) -> list[dict[str, Any]]:
        return list(self.datasets.labelled())

    @property
    def disagreements(self) -> list[dict[str, Any]]:
        return list(self.datasets.disagreements())


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
    """What the pass over the eval records collects (analysis/columnar.py): the counts over all
    records, and the rows of the requests with a human score in the window."""

    read: int = 0
    in_window: int = 0
    requests_with_feedback: int = 0
    cohort_requests: Counter[str] = field(default_factory=Counter)
    cohort_feedback: Counter[str] = field(default_factory=Counter)
    cohort_contradictory: Counter[str] = field(default_factory=Counter)
    # per cohort, the sum and the sum of squares of the evaluator's score over every request in the window
    cohort_overall: dict[str, tuple[float, float]] = field(default_factory=dict)
    good_verdicts: int = 0  # requests in the window whose evaluator score is above the threshold
    # per segment field (its index), value and cohort: requests, and the sum and the sum of squares
    # of the evaluator's score over them (queries.segment_cohorts)
    segment_cohorts: dict[tuple[int, str], dict[str, tuple[int, float, float]]] = field(default_factory=dict)
    # with a calibration map: per cohort, the sum and the sum of squares of the calibrated score (p_good),
    # then of the expected human score, over every request in the window (queries.calibrated_cohorts)
    cohort_calibrated: dict[str, tuple[float, float, float, float]] | None = None
    orphan_requests: int = 0  # requests with feedback that no eval record read names
    orphan_events: int = 0  # and their feedback events
    outside_requests: int = 0  # requests with feedback whose records read all lie outside the read range
    outside_events: int = 0  # and their feedback events
    rows: Rows = field(default_factory=Rows)


def change_sides(changes: list[Change], since: datetime, until: datetime, settings: AnalysisSettings
                 ) -> list[ChangeSides]:
    window = (since.timestamp(), until.timestamp())
    return [ChangeSides(c, window, settings.impact_window.total_seconds()) for c in changes]


