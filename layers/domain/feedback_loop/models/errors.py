"""Domain errors: each one maps to one HTTP status in the API handler."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from feedback_loop.models.feedback import FeedbackType, FieldError

_UNION_TAGS = {t.value for t in FeedbackType}


class FeedbackLoopError(Exception):
    """Base of the errors the API turns into a 4xx or 503."""


class Unauthorized(FeedbackLoopError):
    """No key, a malformed key, an unknown key or a revoked key: the caller learns no more than that."""


class EventConflict(FeedbackLoopError):
    def __init__(self, event_id: str):
        super().__init__(f"event_id {event_id!r} was already stored with a different body")
        self.event_id = event_id


class DuplicateChange(FeedbackLoopError):
    def __init__(self, name: str):
        super().__init__(f"a change named {name!r} is already registered in this project")
        self.name = name


class ChangeNotFound(FeedbackLoopError):
    def __init__(self, name: str):
        super().__init__(f"no change named {name!r} in this project")
        self.name = name


class NoCalibrator(FeedbackLoopError):
    def __init__(self) -> None:
        super().__init__("no calibrator is in service for this project (feedback-loop calibrate deploy)")


class StorageUnavailable(FeedbackLoopError):
    """The store kept failing within the time budget; nothing was reported as stored."""


class RateLimited(FeedbackLoopError):
    """The key made more requests this minute than its limit allows."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """Turns a pydantic error location into the field a client sent.

    Drops the `body` prefix and the discriminator tag pydantic inserts for unions, and names the
    discriminator itself when the tag is missing or unknown.
    """
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    if parts and parts[0] in _UNION_TAGS:
        parts = parts[1:]
    return ".".join(parts)


def field_errors(errors: list[dict[str, Any]]) -> list[FieldError]:
    result = []
    for error in errors:
        name = field_name(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if error.get("type") in {"union_tag_invalid", "union_tag_not_found"}:
            name = "feedback_type"
            tags = ", ".join(t.value for t in FeedbackType)
            message = f"must be one of: {tags}" if error["type"] == "union_tag_invalid" else "is required"
        elif error.get("type") == "json_invalid":
            name, message = "body", f"is not valid JSON: {error.get('ctx', {}).get('error', 'decode error')}"
        elif error.get("type") == "missing":
            message = "is required"
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        result.append(FieldError(field=name or "body", message=message))
    return result


def validation_field_errors(error: ValidationError) -> list[FieldError]:
    return field_errors(error.errors(include_url=False))
