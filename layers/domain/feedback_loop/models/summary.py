"""The per-request feedback summary returned by GET /v1/requests/{request_id}/feedback."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from feedback_loop.models.feedback import FeedbackType


class Comment(BaseModel):
    text: str
    user_id: str | None = None
    timestamp: datetime


class ImplicitSignals(BaseModel):
    used: int = 0
    edited: int = 0
    discarded: int = 0
    edits: list[str] = Field(default_factory=list, description="The edited texts, oldest first")
    score: float | None = Field(
        default=None,
        description="Mean of usage = 1 and discard = 0 over users' latest signal; edits need the "
        "original output and are scored by the analysis, not here",
    )
    score_n: int = 0


class HumanScore(BaseModel):
    score: float | None = Field(description="Mean over users of each user's latest thumbs or rating, in [0, 1]")
    label: str | None = Field(description="good (>= 0.75), bad (<= 0.25) or neutral; null without votes")
    n_users: int


class RequestSummary(BaseModel):
    request_id: str
    events: int
    counts: dict[FeedbackType, int]
    thumbs_up: int
    thumbs_down: int
    ratings: int
    mean_rating: float | None
    comments: list[Comment]
    implicit: ImplicitSignals
    human: HumanScore
    first_at: datetime | None
    last_at: datetime | None
