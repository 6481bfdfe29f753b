"""The changes registry: prompt and model changes that the weekly analysis measures."""

from __future__ import annotations

from datetime import datetime, timezone

from feedback_loop.dal import items as keys
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.models.changes import Change, StoredChange
from feedback_loop.models.errors import ChangeNotFound, DuplicateChange


def register_change(table: FeedbackTable, project: str, change: Change, now: datetime | None = None) -> StoredChange:
    stored = StoredChange(**change.model_dump(), created_at=now or datetime.now(timezone.utc))
    if table.put_if_absent(keys.change_item(project, stored)) is not None:
        raise DuplicateChange(change.name)
    return stored


def list_changes(table: FeedbackTable, project: str) -> list[StoredChange]:
    found = table.query_partition(keys.change_key(project, "")["pk"], sk_prefix="CHANGE#")
    return sorted((keys.change_from_item(i) for i in found), key=lambda c: (c.effective_at, c.name))


def get_change(table: FeedbackTable, project: str, name: str) -> StoredChange:
    item = table.get(**keys.change_key(project, name))
    if item is None:
        raise ChangeNotFound(name)
    return keys.change_from_item(item)
