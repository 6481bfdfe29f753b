"""The feedback event contract (ARCHITECTURE.md, "Feedback event", version 1).

Incoming events are a union discriminated by `feedback_type`, so each type carries its own value
rule and a rejected value is reported at `value` with the type's rule in the message.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)

MAX_COMMENT_CHARS = 10_000
MAX_EDIT_CHARS = 50_000
MAX_METADATA_BYTES = 4096
MAX_METADATA_DEPTH = 8
MAX_FUTURE_SKEW = timedelta(minutes=5)
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_BATCH_EVENTS = 500


class FeedbackType(StrEnum):
    THUMBS_UP = "explicit_thumbs_up"
    THUMBS_DOWN = "explicit_thumbs_down"
    RATING = "explicit_rating"
    COMMENT = "explicit_text_comment"
    USAGE = "implicit_usage"
    EDIT = "implicit_edit"
    DISCARD = "implicit_discard"

    @property
    def is_explicit(self) -> bool:
        return self.value.startswith("explicit_")


# A request_id is a path segment of GET /v1/requests/{request_id}/feedback, so it holds only what
# the router matches in a segment (Powertools' class: word characters and URL-safe punctuation);
# '%' is left out because gateways differ in whether they decode it.
REQUEST_ID_PATTERN = r"^[\w\-._~()'!*:@,;=+&$<> \[\]{}|^]+$"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_chars(text: str) -> str:
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters")
    return text


def _require_true(flag: bool) -> bool:
    if flag is not True:
        raise ValueError("must be true")
    return flag


def _non_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty or only white space")
    return text


def _utc(moment: datetime) -> datetime:
    # A timestamp without an offset is read as UTC, the contract's default zone.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_json_depth(v) for v in value), default=0)
    return 0


def _bounded_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if metadata is None:
        return None
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON, got {size}")
    if _json_depth(metadata) > MAX_METADATA_DEPTH:
        raise ValueError(f"must be nested at most {MAX_METADATA_DEPTH} levels deep")
    return metadata


RequestId = Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=REQUEST_ID_PATTERN)]
EventId = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
Label = Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(_no_control_chars)]
TrueFlag = Annotated[
    StrictBool, AfterValidator(_require_true), WithJsonSchema({"type": "boolean", "const": True})
]
Rating = Annotated[StrictInt, Field(ge=1, le=5)]
CommentText = Annotated[StrictStr, Field(min_length=1, max_length=MAX_COMMENT_CHARS), AfterValidator(_non_blank)]
EditedText = Annotated[StrictStr, Field(max_length=MAX_EDIT_CHARS)]
Metadata = Annotated[dict[str, Any] | None, AfterValidator(_bounded_metadata)]


class _EventFields(BaseModel):
    """Fields every feedback event has, whatever its type."""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId
    user_id: Label | None = None
    user_cohort: Label | None = None
    timestamp: datetime | None = None
    event_id: EventId | None = None
    metadata: Metadata = None

    @field_validator("timestamp")
    @classmethod
    def _not_in_future(cls, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        moment = _utc(moment)
        if moment > datetime.now(timezone.utc) + MAX_FUTURE_SKEW:
            raise ValueError("must not be more than 5 minutes in the future")
        if moment < EARLIEST:  # before any LLM app, and before the epoch that TTLs count from
            raise ValueError(f"must not be before {EARLIEST:%Y-%m-%d}")
        return moment


class ThumbsUp(_EventFields):
    feedback_type: Literal[FeedbackType.THUMBS_UP]
    value: TrueFlag


class ThumbsDown(_EventFields):
    feedback_type: Literal[FeedbackType.THUMBS_DOWN]
    value: TrueFlag


class RatingEvent(_EventFields):
    feedback_type: Literal[FeedbackType.RATING]
    value: Rating


class CommentEvent(_EventFields):
    feedback_type: Literal[FeedbackType.COMMENT]
    value: CommentText


class UsageEvent(_EventFields):
    feedback_type: Literal[FeedbackType.USAGE]
    value: TrueFlag


class EditEvent(_EventFields):
    feedback_type: Literal[FeedbackType.EDIT]
    value: EditedText


class DiscardEvent(_EventFields):
    feedback_type: Literal[FeedbackType.DISCARD]
    value: TrueFlag


FeedbackEventIn = Annotated[
    Union[ThumbsUp, ThumbsDown, RatingEvent, CommentEvent, UsageEvent, EditEvent, DiscardEvent],
    Field(discriminator="feedback_type"),
]


class FeedbackEvent(BaseModel):
    """A stored feedback event: what the API returns and the analysis reads."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    request_id: str
    feedback_type: FeedbackType
    value: bool | int | str
    user_id: str | None = None
    user_cohort: str | None = None
    timestamp: datetime
    received_at: datetime
    metadata: dict[str, Any] | None = None


class BatchRequest(BaseModel):
    """A batch body. Items stay raw here so that each one is validated, and rejected, on its own."""

    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    status: int
    type: str = Field(description="the HTTP reason phrase")
    message: str
    fields: list[FieldError] = Field(default_factory=list, description="each field that was refused, and why")


class ErrorResponse(BaseModel):
    """Every refusal of the API (4xx and 5xx) has this body."""

    error: ErrorDetail


class BatchItemResult(BaseModel):
    index: int
    status: int = Field(description="201 stored, 200 already stored, 409 conflict, 422 invalid, 503 retry")
    event_id: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class BatchResult(BaseModel):
    stored: int
    duplicates: int
    rejected: int
    results: list[BatchItemResult]

    @classmethod
    def of(cls, results: list[BatchItemResult]) -> "BatchResult":
        """The tally of per-item results: 201 stored, 200 duplicate, anything else rejected."""
        return cls(stored=sum(r.status == 201 for r in results), duplicates=sum(r.status == 200 for r in results),
                   rejected=sum(r.status not in (200, 201) for r in results), results=results)
