"""The single-table key design (docs/STORAGE.md), in one place.

| entity   | pk                          | sk               | gsi1pk                          | gsi1sk                  |
|----------|-----------------------------|------------------|---------------------------------|-------------------------|
| feedback | FB#<project>#<request_id>   | EV#<event_id>    | FBDAY#<project>#<day>#<shard>   | <timestamp>#<event_id>  |
| change   | CHANGES#<project>           | CHANGE#<name>    |                                 |                         |
| api key  | APIKEY#<key_id>             | APIKEY           | KEYS#<project>                  | <created_at>#<key_id>   |
| eval log | EVAL#<project>#<request_id> | EVAL             |                                 |                         |

(An eval log record's item only marks it as accepted by POST /v1/evals, with the fingerprint of its
body: the record itself went to the eval-log delivery stream.)

Project names never contain '#', so a request_id containing '#' cannot reach another project's keys.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

from feedback_loop.models.changes import StoredChange
from feedback_loop.models.feedback import FeedbackEvent

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def timestamp_text(moment: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order in sort keys (four-digit years
    whatever the platform's strftime does with years before 1000)."""
    utc = moment.astimezone(timezone.utc)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)


def shard_of(event_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:4], "big") % shards


def item_key(item: dict[str, Any]) -> tuple[str, str]:
    """An item's primary key as a tuple, to index items by."""
    return item["pk"], item["sk"]


def request_pk(project: str, request_id: str) -> str:
    return f"FB#{project}#{request_id}"


def event_key(project: str, request_id: str, event_id: str) -> dict[str, str]:
    return {"pk": request_pk(project, request_id), "sk": f"EV#{event_id}"}


def day_partition(project: str, day: date, shard: int) -> str:
    return f"FBDAY#{project}#{day.isoformat()}#{shard}"


def days_between(since: datetime, until: datetime) -> list[date]:
    first, last = since.astimezone(timezone.utc).date(), until.astimezone(timezone.utc).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def feedback_item(
    project: str, event: FeedbackEvent, fingerprint: str, shards: int, expires_at: int | None
) -> dict[str, Any]:
    stamp = timestamp_text(event.timestamp)
    item: dict[str, Any] = {
        **event_key(project, event.request_id, event.event_id),
        "gsi1pk": day_partition(project, event.timestamp.astimezone(timezone.utc).date(),
                                shard_of(event.event_id, shards)),
        "gsi1sk": f"{stamp}#{event.event_id}",
        "entity": "feedback",
        "project": project,
        "event_id": event.event_id,
        "request_id": event.request_id,
        "feedback_type": event.feedback_type.value,
        "value": event.value,
        "timestamp": stamp,
        "received_at": timestamp_text(event.received_at),
        "fingerprint": fingerprint,
    }
    for optional in ("user_id", "user_cohort"):
        if getattr(event, optional) is not None:
            item[optional] = getattr(event, optional)
    if event.metadata is not None:
        # Kept as JSON text: DynamoDB would turn floats into Decimals and reorder nothing else.
        item["metadata"] = json.dumps(event.metadata, separators=(",", ":"), ensure_ascii=False)
    if expires_at is not None:
        item["expires_at"] = expires_at
    return item


def item_value(item: dict[str, Any]) -> bool | int | str:
    """A stored event's value as the API took it: DynamoDB numbers come back as Decimal."""
    value = item["value"]
    return value if isinstance(value, (bool, str)) else int(value)


def feedback_from_item(item: dict[str, Any]) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=item["event_id"],
        request_id=item["request_id"],
        feedback_type=item["feedback_type"],
        value=item_value(item),
        user_id=item.get("user_id"),
        user_cohort=item.get("user_cohort"),
        timestamp=parse_timestamp(item["timestamp"]),
        received_at=parse_timestamp(item["received_at"]),
        metadata=json.loads(item["metadata"]) if "metadata" in item else None,
    )


def change_key(project: str, name: str) -> dict[str, str]:
    return {"pk": f"CHANGES#{project}", "sk": f"CHANGE#{name}"}


def change_item(project: str, change: StoredChange) -> dict[str, Any]:
    item: dict[str, Any] = {
        **change_key(project, change.name),
        "entity": "change",
        "project": project,
        "name": change.name,
        "effective_at": timestamp_text(change.effective_at),
        "created_at": timestamp_text(change.created_at),
    }
    for optional in ("description", "variant_field", "control", "treatment"):
        if getattr(change, optional) is not None:
            item[optional] = getattr(change, optional)
    if change.segment is not None:
        item["segment"] = json.dumps(change.segment, separators=(",", ":"), ensure_ascii=False)
    return item


def change_from_item(item: dict[str, Any]) -> StoredChange:
    return StoredChange(
        name=item["name"],
        description=item.get("description"),
        effective_at=parse_timestamp(item["effective_at"]),
        created_at=parse_timestamp(item["created_at"]),
        segment=json.loads(item["segment"]) if "segment" in item else None,
        variant_field=item.get("variant_field"),
        control=item.get("control"),
        treatment=item.get("treatment"),
    )


def api_key_key(key_id: str) -> dict[str, str]:
    return {"pk": f"APIKEY#{key_id}", "sk": "APIKEY"}


def keys_partition(project: str) -> str:
    return f"KEYS#{project}"


def eval_key(project: str, request_id: str) -> dict[str, str]:
    return {"pk": f"EVAL#{project}#{request_id}", "sk": "EVAL"}
