"""The definitions of ARCHITECTURE.md, "Definitions the analysis uses", as pure functions.

The API's per-request summary and the weekly analysis both score requests through this module, so
the two can never disagree about what a thumbs up or a rating of 3 means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
try:  # difflib compiled (the analysis layer ships it): the same ratios, about 13x faster
    from cydifflib import SequenceMatcher
except ImportError:  # the API function's layer: difflib itself
    from difflib import SequenceMatcher
from typing import Any, Protocol

from feedback_loop.labels import BAD_AT, GOOD_AT  # noqa: F401  (scoring.GOOD_AT, as everywhere)
from feedback_loop.models.feedback import FeedbackType

IMPLICIT_TYPES = frozenset({FeedbackType.USAGE, FeedbackType.EDIT, FeedbackType.DISCARD})


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


class LatestPerUser:
    """Keeps each user's latest item, by (timestamp, event_id) so that ties resolve stably.

    Events without a user_id share the user None: the definitions group by (request, user).
    """

    __slots__ = ("latest",)

    def __init__(self) -> None:
        self.latest: dict[str | None, tuple[Any, str, Any]] = {}

    def add(self, user: str | None, at: Any, event_id: str, item: Any) -> None:
        held = self.latest.get(user)
        if held is None or (at, event_id) > held[:2]:
            self.latest[user] = (at, event_id, item)

    def mean(self, score_of: Callable[[Any], float | None] = lambda item: item) -> Score:
        """Mean over users of score_of(latest item); users whose item has no score are left out."""
        scores = [s for s in (score_of(item) for _, _, item in self.latest.values()) if s is not None]
        return Score(sum(scores) / len(scores), len(scores)) if scores else Score(None, 0)


def implicit_value(feedback_type: FeedbackType, value: Any, output: str | None) -> float | None:
    """usage = 1, discard = 0, edit = similarity to the output (None without the output)."""
    if feedback_type is FeedbackType.USAGE:
        return 1.0
    if feedback_type is FeedbackType.DISCARD:
        return 0.0
    if feedback_type is FeedbackType.EDIT and output is not None:
        return edit_similarity(output, str(value))
    return None


def human_score(events: Iterable[ScoredEvent]) -> Score:
    """Mean over users of each user's latest explicit thumbs or rating, in [0, 1]."""
    votes = LatestPerUser()
    for event in events:
        score = vote_score(event.feedback_type, event.value)
        if score is not None:
            votes.add(event.user_id, event.timestamp, event.event_id, score)
    return votes.mean()


def implicit_score(events: Iterable[ScoredEvent], output: str | None = None) -> Score:
    """Mean over users of each user's latest implicit signal: usage = 1, discard = 0, edit =
    similarity. Without the request's output a user whose latest signal is an edit is left out
    (never guessed)."""
    signals = LatestPerUser()
    for event in events:
        if event.feedback_type in IMPLICIT_TYPES:
            signals.add(event.user_id, event.timestamp, event.event_id, (event.feedback_type, event.value))
    return signals.mean(lambda item: implicit_value(item[0], item[1], output))


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
