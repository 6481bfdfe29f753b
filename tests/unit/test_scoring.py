"""Human score and label (ARCHITECTURE.md definitions) against independent recomputations and real data."""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_loop import scoring
from feedback_loop.logic.summary import summarise
from feedback_loop.models.feedback import FeedbackEvent, FeedbackType

from ..conftest import SHARED

T0 = datetime(2026, 5, 15, tzinfo=timezone.utc)


def event(feedback_type: FeedbackType, value: object, user: str | None, minute: int, event_id: str) -> FeedbackEvent:
    moment = T0 + timedelta(minutes=minute)
    return FeedbackEvent(event_id=event_id, request_id="r", feedback_type=feedback_type, value=value,
                         user_id=user, timestamp=moment, received_at=moment)


@pytest.mark.parametrize(("rating", "expected"), [(1, 0.0), (2, 0.25), (3, 0.5), (4, 0.75), (5, 1.0)])
def test_rating_maps_linearly_to_unit_interval(rating: int, expected: float) -> None:
    assert scoring.vote_score(FeedbackType.RATING, rating) == expected


@pytest.mark.parametrize(("score", "label"), [
    (1.0, "good"), (0.75, "good"), (0.7499, "neutral"), (0.5, "neutral"), (0.2501, "neutral"),
    (0.25, "bad"), (0.0, "bad"), (None, None),
])
def test_label_thresholds_are_inclusive(score: float | None, label: str | None) -> None:
    assert scoring.human_label(score) == label


def test_evaluator_verdict_is_strictly_above_threshold() -> None:
    assert scoring.evaluator_verdict(0.7) == "bad"
    assert scoring.evaluator_verdict(0.7001) == "good"
    assert scoring.evaluator_verdict(0.5, threshold=0.4) == "good"


def test_latest_vote_per_user_counts_and_users_are_averaged() -> None:
    events = [
        event(FeedbackType.THUMBS_UP, True, "alice", 0, "a1"),
        event(FeedbackType.THUMBS_DOWN, True, "alice", 5, "a2"),  # alice changed her mind: 0
        event(FeedbackType.RATING, 4, "bob", 1, "b1"),  # bob: 0.75
        event(FeedbackType.RATING, 5, "bob", 0, "b0"),  # older, ignored
        event(FeedbackType.COMMENT, "meh", "carol", 9, "c1"),  # comments carry no score
        event(FeedbackType.USAGE, True, "dan", 9, "d1"),  # implicit: never mixed in
    ]
    score = scoring.human_score(events)
    assert score.n_users == 2
    assert score.value == pytest.approx((0.0 + 0.75) / 2)
    implicit = scoring.implicit_score(events)
    assert (implicit.value, implicit.n_users) == (1.0, 1)


def test_edits_score_by_similarity_only_with_the_output() -> None:
    events = [event(FeedbackType.EDIT, "hello world", "u", 0, "e1"), event(FeedbackType.DISCARD, True, "v", 0, "e2")]
    assert scoring.implicit_score(events).n_users == 1  # no output: the edit is left out
    with_output = scoring.implicit_score(events, output="hello world!")
    assert with_output.n_users == 2
    assert with_output.value == pytest.approx((scoring.edit_similarity("hello world!", "hello world") + 0) / 2)
    assert scoring.edit_similarity("same", "same") == 1.0
    assert scoring.edit_similarity("abc", "xyz") == 0.0


votes = st.lists(
    st.tuples(
        st.sampled_from([FeedbackType.THUMBS_UP, FeedbackType.THUMBS_DOWN, FeedbackType.RATING,
                         FeedbackType.COMMENT, FeedbackType.USAGE]),
        st.integers(1, 5),
        st.sampled_from(["u1", "u2", "u3", None]),
        st.integers(0, 30),
    ),
    max_size=25,
)


@given(votes)
def test_human_score_matches_an_independent_recount(drawn: list) -> None:
    events = []
    for i, (kind, rating, user, minute) in enumerate(drawn):
        value = rating if kind is FeedbackType.RATING else ("text" if kind is FeedbackType.COMMENT else True)
        events.append(event(kind, value, user, minute, f"e{i:03d}"))
    # Independent recount: replay votes in time order, the last one per user wins.
    last: dict[str | None, float] = {}
    for e in sorted(events, key=lambda e: (e.timestamp, e.event_id)):
        if e.feedback_type is FeedbackType.THUMBS_UP:
            last[e.user_id] = 1.0
        elif e.feedback_type is FeedbackType.THUMBS_DOWN:
            last[e.user_id] = 0.0
        elif e.feedback_type is FeedbackType.RATING:
            last[e.user_id] = (e.value - 1) / 4
    score = scoring.human_score(events)
    assert score.n_users == len(last)
    if last:
        assert score.value == pytest.approx(statistics.fmean(last.values()))
    else:
        assert score.value is None


def three_ratings(overall: float) -> list[int]:
    """Splits a mean of three 1-5 ratings (a multiple of 1/3) back into three integer ratings."""
    total = round(overall * 3)
    base, extra = divmod(total, 3)
    return [base + (1 if i < extra else 0) for i in range(3)]


def test_unieval_topical_chat_human_scores_from_three_annotators() -> None:
    """Real data: each response's human `overall` is the mean of three 1-5 ratings, so the human
    score of the three ratings, one per annotator, must be (overall - 1) / 4."""
    items = json.loads((SHARED / "external/unieval/topical_chat_result.json").read_text())
    assert len(items) == 360
    for n, item in enumerate(items):
        overall = item["scores"]["overall"]
        ratings = three_ratings(overall)
        assert sum(ratings) / 3 == pytest.approx(overall, abs=1e-6)
        events = [event(FeedbackType.RATING, r, f"annotator{k}", 0, f"e{n}-{k}") for k, r in enumerate(ratings)]
        summary = summarise(f"tc-{n}", events)
        assert summary.human.n_users == 3
        assert summary.human.score == pytest.approx((overall - 1) / 4, abs=1e-6)
        assert summary.mean_rating == pytest.approx(overall, abs=1e-6)
        # good iff the mean rating is at least 4, bad iff at most 2 (integer totals: no rounding)
        total = sum(ratings)
        assert summary.human.label == ("good" if total >= 12 else "bad" if total <= 6 else "neutral")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.text(max_size=120))
def test_edit_similarity_is_difflibs_ratio(output: str, edited: str) -> None:
    """The compiled SequenceMatcher (cydifflib, in the analysis layer) gives difflib's own ratio."""
    from difflib import SequenceMatcher

    expected = SequenceMatcher(None, output, edited, autojunk=False).ratio() if output or edited else 1.0
    assert scoring.SequenceMatcher.__module__.startswith("cydifflib")
    assert scoring.edit_similarity(output, edited) == expected
