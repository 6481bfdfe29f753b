"""The feedback event contract (ARCHITECTURE.md, "Feedback event", version 1).

Incoming events are a union discriminated by `feedback_type`, so each type carries its own value
rule and a rejected value is reported at `value` with the type's rule in the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import core_schema

from feedback_loop.models.strict_json import nesting_depth

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


# A request_id is a path segment of GET /v1/requests/{request_id}/feedback (percent-encoded where
# needed), so it holds no '/', no '%' (gateways differ in whether they decode it twice), no control
# characters, and is not only dots (clients resolve '.' and '..' segments away). Negated classes read
# the same in every regex dialect (ECMA's \w, for one, does not).
_SEGMENT_CHAR = r"[^/%\x00-\x1f\x7f]"
REQUEST_ID_PATTERN = rf"^{_SEGMENT_CHAR}*[^/%\x00-\x1f\x7f.]{_SEGMENT_CHAR}*$"
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# A character that is not white space (str.isspace; none lies above U+3000), spelled out because
# the dialects' \s differ (Python's takes \x1c-\x1f, ECMA's takes U+FEFF).
WHITE_SPACE_CHARACTERS = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
WHITE_SPACE = "".join(f"\\u{ord(character):04x}" for character in WHITE_SPACE_CHARACTERS)
NON_BLANK_PATTERN = f"[^{WHITE_SPACE}]"


@dataclass(frozen=True)
class Matches:
    """A rule written once as a regular expression: published as the field's JSON Schema `pattern`
    (searched, as JSON Schema does) and checked with Python's re, with a message that says the rule
    in words (pydantic's own `pattern` answers "String should match pattern '...'"). The patterns
    are written to read the same in ECMA-262, the dialect of OpenAPI documents."""

    pattern: str
    message: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        compiled = re.compile(self.pattern)

        def check(text: str) -> str:
            if not compiled.search(text):
                raise ValueError(self.message)
            return text

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {**handler(schema), "pattern": self.pattern}


def _require_true(flag: bool) -> bool:
    if flag is not True:
        raise ValueError("must be true")
    return flag


def _utc(moment: datetime) -> datetime:
    # A timestamp without an offset is read as UTC, the contract's default zone.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _iso_text(moment: Any) -> Any:
    """Timestamps come as ISO 8601 text (pydantic would also read numbers, and digit strings, as Unix
    times); datetimes made in Python pass."""
    if isinstance(moment, str) and re.match(r"[0-9]{4}-", moment) or isinstance(moment, datetime):
        return moment
    raise ValueError("must be an ISO 8601 date-time, e.g. 2026-05-15T10:00:00Z")


def in_time(moment: datetime) -> datetime:
    """The time rule of feedback and eval records: UTC, from EARLIEST to MAX_FUTURE_SKEW after now."""
    moment = _utc(moment)
    if moment > datetime.now(timezone.utc) + MAX_FUTURE_SKEW:
        raise ValueError("must not be more than 5 minutes in the future")
    if moment < EARLIEST:  # before any LLM app, and before the epoch that TTLs count from
        raise ValueError(f"must not be before {EARLIEST:%Y-%m-%d}")
    return moment


def _bounded_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if metadata is None:
        return None
    # the depth first, without recursion: json.dumps of a value nested hundreds deep is a RecursionError
    if nesting_depth(metadata, stop_above=MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise ValueError(f"must be nested at most {MAX_METADATA_DEPTH} levels deep")
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON, got {size}")
    return metadata


RequestId = Annotated[StrictStr, Field(min_length=1, max_length=256),
                      Matches(REQUEST_ID_PATTERN, "must not contain '/', '%' or control characters, nor be only dots")]
EventId = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
Label = Annotated[StrictStr, Field(min_length=1, max_length=256),
                  Matches(NO_CONTROL_PATTERN, "must not contain control characters")]
TrueFlag = Annotated[
    StrictBool, AfterValidator(_require_true), WithJsonSchema({"type": "boolean", "const": True})
]
def _whole_number(value: Any) -> Any:
    """3.0 is the integer 3 to JSON Schema, and to the API; text and booleans are not numbers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Rating = Annotated[StrictInt, Field(ge=1, le=5), BeforeValidator(_whole_number)]
CommentText = Annotated[StrictStr, Field(min_length=1, max_length=MAX_COMMENT_CHARS),
                        Matches(NON_BLANK_PATTERN, "must not be empty or only white space")]
EditedText = Annotated[StrictStr, Field(max_length=MAX_EDIT_CHARS)]
Metadata = Annotated[dict[str, Any] | None, AfterValidator(_bounded_metadata), Field(description=(
    f"any JSON object of at most {MAX_METADATA_BYTES} bytes as compact UTF-8 JSON, nested at most "
    f"{MAX_METADATA_DEPTH} levels deep (the object itself is level 1)"))]
Timestamp = Annotated[datetime, BeforeValidator(_iso_text)]


class _EventFields(BaseModel):
    """Fields every feedback event has, whatever its type."""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId
    user_id: Label | None = None
    user_cohort: Label | None = None
    timestamp: Timestamp | None = Field(default=None, description=(
        "when the user gave the feedback (receipt time if absent), read as UTC without an offset; "
        f"from {EARLIEST:%Y-%m-%d} to at most {MAX_FUTURE_SKEW.seconds // 60} minutes after the API receives it"))
    event_id: EventId | None = None
    metadata: Metadata = None

    @field_validator("timestamp")
    @classmethod
    def _not_in_future(cls, moment: datetime | None) -> datetime | None:
        return None if moment is None else in_time(moment)


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
