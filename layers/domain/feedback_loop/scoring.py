"""The definitions of ARCHITECTURE.md, "Definitions the analysis uses", as pure functions.

The API's per-request summary and the weekly analysis both score requests through this module, so
the two can never disagree about what a thumbs up or a rating of 3 means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import Protocol

from feedback_loop.models.feedback import FeedbackType

GOOD_AT = 0.75
BAD_AT = 0.25


class ScoredEvent(Protocol):
    feedback_type: FeedbackType
    value: bool | int | str
    user_id: str | None
    timestamp: datetime
    event_id: str


@dataclass(frozen=True)
class Score:
    """A request's score and how many users it averages."""

    value: float | None
    n_users: int


def vote_score(feedback_type: FeedbackType, value: bool | int | str) -> float | None:
    """Thumbs up = 1, thumbs down = 0, rating r = (r - 1) / 4; other types carry no vote."""
    if feedback_type is FeedbackType.THUMBS_UP:
        return 1.0
    if feedback_type is FeedbackType.THUMBS_DOWN:
        return 0.0
    if feedback_type is FeedbackType.RATING:
        return (int(value) - 1) / 4
    return None


def edit_similarity(output: str, edited: str) -> float:
    """Similarity in [0, 1] between the model's output and the user's edit (difflib's ratio)."""
    if not output and not edited:
        return 1.0
    return SequenceMatcher(None, output, edited, autojunk=False).ratio()


def _latest_per_user(
    events: Iterable[ScoredEvent], score_of: Callable[[ScoredEvent], float | None]
) -> Score:
    # Per user, the latest scored event counts (ties broken by event_id, so the result is stable);
    # events without a user_id share the user None, as the definition groups by (request, user).
    latest: dict[str | None, tuple[datetime, str, float]] = {}
    for event in events:
        score = score_of(event)
        if score is None:
            continue
        key = (event.timestamp, event.event_id)
        held = latest.get(event.user_id)
        if held is None or key > held[:2]:
            latest[event.user_id] = (*key, score)
    if not latest:
        return Score(None, 0)
    return Score(sum(s for _, _, s in latest.values()) / len(latest), len(latest))


def human_score(events: Iterable[ScoredEvent]) -> Score:
    """Mean over users of each user's latest explicit thumbs or rating, in [0, 1]."""
    return _latest_per_user(events, lambda e: vote_score(e.feedback_type, e.value))


def implicit_score(events: Iterable[ScoredEvent], output: str | None = None) -> Score:
    """Mean over users of each user's latest implicit signal: usage = 1, discard = 0, edit = similarity.

    Without the request's output an edit cannot be scored and is left out (never guessed).
    """

    def score_of(event: ScoredEvent) -> float | None:
        if event.feedback_type is FeedbackType.USAGE:
            return 1.0
        if event.feedback_type is FeedbackType.DISCARD:
            return 0.0
        if event.feedback_type is FeedbackType.EDIT and output is not None:
            return edit_similarity(output, str(event.value))
        return None

    return _latest_per_user(events, score_of)


def human_label(score: float | None) -> str | None:
    """good if score >= 0.75, bad if <= 0.25, neutral between; None when nobody voted."""
    if score is None:
        return None
    if score >= GOOD_AT:
        return "good"
    if score <= BAD_AT:
        return "bad"
    return "neutral"


def evaluator_verdict(overall: float, threshold: float = 0.7) -> str:
    """good if the evaluator's overall score is above the threshold, else bad."""
    return "good" if overall > threshold else "bad"
