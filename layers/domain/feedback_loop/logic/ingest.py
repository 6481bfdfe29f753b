"""Storing feedback events: once per (project, request_id, event_id), batches item by item."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import TypeAdapter, ValidationError

from feedback_loop.dal import items as keys
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.models.errors import EventConflict, validation_field_errors
from feedback_loop.models.feedback import (
    BatchItemResult,
    BatchResult,
    FeedbackEvent,
    FeedbackEventIn,
    FieldError,
)

_event_adapter: TypeAdapter[Any] = TypeAdapter(FeedbackEventIn)


@dataclass(frozen=True)
class IngestPolicy:
    """What the deployment decides about stored events."""

    day_shards: int = 8
    retention_days: int = 0  # 0 keeps events for ever
    eval_dedup_days: int = 14  # how long an accepted eval record's request_id is remembered (logic/evals.py)

    def expires_at(self, received_at: datetime) -> int | None:
        if self.retention_days <= 0:
            return None
        return int((received_at + timedelta(days=self.retention_days)).timestamp())

    def eval_marker_expires_at(self, received_at: datetime) -> int:
        return int((received_at + timedelta(days=self.eval_dedup_days)).timestamp())


@dataclass(frozen=True)
class Recorded:
    event: FeedbackEvent
    created: bool


def fingerprint(event_in: Any) -> str:
    """Hash of what the client sent (not of server defaults), to tell a retry from a reused event_id."""
    sent = event_in.model_dump(mode="json", exclude_none=True, exclude={"event_id"})
    return hashlib.sha256(json.dumps(sent, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _prepare(project: str, event_in: Any, policy: IngestPolicy, now: datetime) -> dict[str, Any]:
    event = FeedbackEvent(
        event_id=event_in.event_id or uuid.uuid4().hex,
        request_id=event_in.request_id,
        feedback_type=event_in.feedback_type,
        value=event_in.value,
        user_id=event_in.user_id,
        user_cohort=event_in.user_cohort,
        timestamp=event_in.timestamp or now,
        received_at=now,
        metadata=event_in.metadata,
    )
    return keys.feedback_item(project, event, fingerprint(event_in), policy.day_shards, policy.expires_at(now))


def record_event(
    table: FeedbackTable, project: str, event_in: Any, policy: IngestPolicy, now: datetime | None = None
) -> Recorded:
    """Stores one validated event; the same event_id and body again returns the original."""
    item = _prepare(project, event_in, policy, now or datetime.now(timezone.utc))
    existing = table.put_if_absent(item)
    if existing is None:
        return Recorded(keys.feedback_from_item(item), created=True)
    if existing.get("fingerprint") != item["fingerprint"]:
        raise EventConflict(item["event_id"])
    return Recorded(keys.feedback_from_item(existing), created=False)


def record_batch(
    table: FeedbackTable,
    project: str,
    raw_events: list[dict[str, Any]],
    policy: IngestPolicy,
    now: datetime | None = None,
) -> BatchResult:
    """Validates each item on its own, stores the valid new ones with conditional writes, reports
    every item.

    An item is reported 201 only after DynamoDB acknowledged its conditional write, 200 or 409 only
    with the stored item read back; items the store could not take after the retries come back as
    503, so a client can resend exactly those.
    """
    now = now or datetime.now(timezone.utc)
    results: list[BatchItemResult | None] = [None] * len(raw_events)
    valid: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(raw_events):
        try:
            event_in = _event_adapter.validate_python(raw)
        except ValidationError as error:
            results[index] = BatchItemResult(index=index, status=422, errors=validation_field_errors(error))
            continue
        valid.append((index, _prepare(project, event_in, policy, now)))

    first: dict[tuple[str, str], dict[str, Any]] = {}
    for _, item in valid:
        first.setdefault(keys.item_key(item), item)  # the same event twice in one batch is written once
    existing = table.get_many(list(first))  # a resent batch costs one read, not a failed write per item
    outcome = table.put_new([item for key, item in first.items() if key not in existing])
    existing.update(outcome.found)  # stored by a concurrent request since the read
    unwritten = {keys.item_key(item) for item in outcome.not_written}
    for index, item in valid:
        key = keys.item_key(item)
        if key in unwritten:
            results[index] = BatchItemResult(
                index=index, status=503, event_id=item["event_id"],
                errors=[FieldError(field="event", message="not stored: the store is busy, send it again")])
        elif key not in existing and item is first[key]:
            results[index] = BatchItemResult(index=index, status=201, event_id=item["event_id"])
        else:
            results[index] = _repeat_result(index, item, existing.get(key, first[key]))
    return BatchResult.of([r for r in results if r is not None])


def _repeat_result(index: int, item: dict[str, Any], original: dict[str, Any]) -> BatchItemResult:
    if original.get("fingerprint") != item["fingerprint"]:
        return BatchItemResult(
            index=index,
            status=409,
            event_id=item["event_id"],
            errors=[FieldError(field="event_id", message="was already stored with a different body")],
        )
    return BatchItemResult(index=index, status=200, event_id=item["event_id"])
