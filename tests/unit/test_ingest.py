"""Batch ingestion's bookkeeping against an in-memory table that can refuse writes."""

from __future__ import annotations

from typing import Any

from feedback_loop.dal.store import PutOutcome
from feedback_loop.logic.ingest import IngestPolicy, record_batch


class FlakyTable:
    """Stores items in a dict; leaves the items whose event_id is in `refuse` unprocessed."""

    def __init__(self, refuse: set[str]):
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.refuse = refuse

    def get_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {k: self.items[k] for k in keys if k in self.items}

    def put_all(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        left = [item for item in items if item.get("event_id") in self.refuse]
        self.items.update({(item["pk"], item["sk"]): item for item in items if item not in left})
        return left

    def put_new(self, items: list[dict[str, Any]]) -> PutOutcome:
        outcome = PutOutcome()
        for item in items:
            key = (item["pk"], item["sk"])
            if item.get("event_id") in self.refuse:
                outcome.not_written.append(item)
            elif key in self.items:
                outcome.found[key] = self.items[key]
            else:
                self.items[key] = item
        return outcome


def event(event_id: str, value: int = 4) -> dict[str, Any]:
    return {"request_id": "r", "feedback_type": "explicit_rating", "value": value, "event_id": event_id}


def test_unwritten_items_are_reported_503_and_never_as_stored() -> None:
    table = FlakyTable(refuse={"busy"})
    result = record_batch(table, "p", [event("ok"), event("busy"), event("busy"), event("bad", 9)], IngestPolicy())
    assert [r.status for r in result.results] == [201, 503, 503, 422]
    assert (result.stored, result.duplicates, result.rejected) == (1, 0, 3)
    assert {i["event_id"] for i in table.items.values()} == {"ok"}
    table.refuse.clear()  # the client resends exactly the 503 items
    again = record_batch(table, "p", [event("busy")], IngestPolicy())
    assert [r.status for r in again.results] == [201]


def test_repeats_within_a_batch_and_across_batches() -> None:
    table = FlakyTable(refuse=set())
    first = record_batch(table, "p", [event("a"), event("a"), event("a", 1)], IngestPolicy())
    assert [r.status for r in first.results] == [201, 200, 409]
    second = record_batch(table, "p", [event("a"), event("a", 2)], IngestPolicy())
    assert [r.status for r in second.results] == [200, 409]
    assert len(table.items) == 1
