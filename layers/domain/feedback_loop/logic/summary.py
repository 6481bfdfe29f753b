"""The per-request feedback summary, computed from the request's stored events."""

from __future__ import annotations

from collections import Counter

from feedback_loop import scoring
from feedback_loop.dal import items as keys
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.models.feedback import FeedbackEvent, FeedbackType
from feedback_loop.models.summary import Comment, HumanScore, ImplicitSignals, RequestSummary


def request_events(table: FeedbackTable, project: str, request_id: str) -> list[FeedbackEvent]:
    """All of one request's events, oldest first: one Query on the request's partition."""
    events = [keys.feedback_from_item(i) for i in table.query_partition(keys.request_pk(project, request_id))]
    return sorted(events, key=lambda e: (e.timestamp, e.event_id))


def summarise(request_id: str, events: list[FeedbackEvent]) -> RequestSummary:
    events = sorted(events, key=lambda e: (e.timestamp, e.event_id))
    counts = Counter(e.feedback_type for e in events)
    ratings = [int(e.value) for e in events if e.feedback_type is FeedbackType.RATING]
    human = scoring.human_score(events)
    implicit = scoring.implicit_score(events)
    return RequestSummary(
        request_id=request_id,
        events=len(events),
        counts={t: counts.get(t, 0) for t in FeedbackType},
        thumbs_up=counts.get(FeedbackType.THUMBS_UP, 0),
        thumbs_down=counts.get(FeedbackType.THUMBS_DOWN, 0),
        ratings=len(ratings),
        mean_rating=sum(ratings) / len(ratings) if ratings else None,
        comments=[
            Comment(text=str(e.value), user_id=e.user_id, timestamp=e.timestamp)
            for e in events
            if e.feedback_type is FeedbackType.COMMENT
        ],
        implicit=ImplicitSignals(
            used=counts.get(FeedbackType.USAGE, 0),
            edited=counts.get(FeedbackType.EDIT, 0),
            discarded=counts.get(FeedbackType.DISCARD, 0),
            edits=[str(e.value) for e in events if e.feedback_type is FeedbackType.EDIT],
            score=implicit.value,
            score_n=implicit.n_users,
        ),
        human=HumanScore(score=human.value, label=scoring.human_label(human.value), n_users=human.n_users),
        first_at=events[0].timestamp if events else None,
        last_at=events[-1].timestamp if events else None,
    )
