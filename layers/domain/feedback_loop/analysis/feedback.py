"""Feedback for the analysis, reduced per request as it is read (memory grows with the feedback).

Sources: a JSON Lines export (`--feedback FILE`) or the table's windowed index (never a Scan).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from feedback_loop import scoring
from feedback_loop.dal.items import feedback_from_item
from feedback_loop.models.feedback import FeedbackEventIn, FeedbackType
from feedback_loop.scoring import IMPLICIT_TYPES, LatestPerUser, Score

_contract = TypeAdapter(FeedbackEventIn)
_CONTRACT_FIELDS = {"request_id", "feedback_type", "value", "user_id", "user_cohort", "timestamp", "event_id",
                    "metadata"}


@dataclass(slots=True)
class RequestFeedback:
    """One request's feedback, folded event by event."""

    votes: LatestPerUser | None = None  # made on the first vote: most requests only have implicit signals
    signals: LatestPerUser | None = None
    explicit: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    comments: int = 0
    positive: bool = False
    negative: bool = False
    user_cohort: str | None = None
    events: int = 0

    def add(self, feedback_type: FeedbackType, value: Any, user_id: str | None, at: Any, event_id: str,
            user_cohort: str | None) -> None:
        self.events += 1
        if self.user_cohort is None and user_cohort:
            self.user_cohort = user_cohort
        if feedback_type.is_explicit:
            self.explicit += 1
        if feedback_type is FeedbackType.THUMBS_UP:
            self.thumbs_up += 1
        elif feedback_type is FeedbackType.THUMBS_DOWN:
            self.thumbs_down += 1
        elif feedback_type is FeedbackType.COMMENT:
            self.comments += 1
        vote = scoring.vote_score(feedback_type, value)
        if vote is not None:
            if self.votes is None:
                self.votes = LatestPerUser()
            self.votes.add(user_id, at, event_id, vote)
            self.positive |= vote >= scoring.GOOD_AT
            self.negative |= vote <= scoring.BAD_AT
        elif feedback_type in IMPLICIT_TYPES:
            if self.signals is None:
                self.signals = LatestPerUser()
            self.signals.add(user_id, at, event_id, (feedback_type, value))

    def human(self) -> Score:
        return self.votes.mean() if self.votes is not None else Score(None, 0)

    def implicit(self, output: str | None) -> Score:
        if self.signals is None:
            return Score(None, 0)
        return self.signals.mean(lambda item: scoring.implicit_value(item[0], item[1], output))

    @property
    def contradictory(self) -> bool:
        """Both a positive (thumbs up, rating 4-5) and a negative (thumbs down, rating 1-2) vote."""
        return self.positive and self.negative


@dataclass
class FeedbackIndex:
    requests: dict[str, RequestFeedback] = field(default_factory=dict)
    events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, request_id: str, feedback_type: FeedbackType, value: Any, user_id: str | None, at: float,
            event_id: str, user_cohort: str | None) -> None:
        self.events += 1
        entry = self.requests.get(request_id)
        if entry is None:
            entry = self.requests[request_id] = RequestFeedback()
        entry.add(feedback_type, value, user_id, at, event_id, user_cohort)

    def add_export_lines(self, lines: Iterable[bytes], until: datetime | None = None) -> None:
        """JSON Lines of feedback events (the export contract: `timestamp` always present)."""
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:  # the common case, a line of exactly the contract, parsed and checked natively
                event = _contract.validate_json(line)
            except ValidationError:
                event = self._lenient(line)  # extra fields, or a line to count as skipped
                if event is None:
                    continue
            if event.timestamp is None:
                self.skipped["feedback_missing_timestamp"] += 1
                continue
            if until is not None and event.timestamp > until:
                self.skipped["feedback_after_run"] += 1
                continue
            self.add(event.request_id, event.feedback_type, event.value, event.user_id,
                     event.timestamp.timestamp(), event.event_id or f"line-{number}", event.user_cohort)

    def _lenient(self, line: bytes) -> Any | None:
        """A line that failed the strict check: kept if only fields outside the contract (such as
        received_at in a table export) were in the way, else counted by reason."""
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.skipped["feedback_invalid_json"] += 1
            return None
        if not isinstance(raw, dict):
            self.skipped["feedback_not_an_object"] += 1
            return None
        try:
            return _contract.validate_python({k: v for k, v in raw.items() if k in _CONTRACT_FIELDS})
        except ValidationError:
            self.skipped["feedback_invalid_event"] += 1
            return None

    def add_export_file(self, path: str | Path, until: datetime | None = None) -> None:
        with open(path, "rb") as lines:
            self.add_export_lines(lines, until)

    def add_items(self, items: Iterator[dict[str, Any]]) -> None:
        """Items of the feedback table (from FeedbackTable.feedback_in_window)."""
        for item in items:
            event = feedback_from_item(item)
            self.add(event.request_id, event.feedback_type, event.value, event.user_id,
                     event.timestamp.timestamp(), event.event_id, event.user_cohort)
