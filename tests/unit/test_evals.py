"""POST /v1/evals's domain logic against a stream that refuses some records and a table in memory:
what is reported for each item, and the stream's call limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from feedback_loop.logic import evals
from feedback_loop.logic.ingest import IngestPolicy

from .test_ingest import FlakyTable


class Client:
    """Firehose's PutRecordBatch: refuses the records whose text says so, remembers the calls."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append([r["Data"] for r in Records])
        return {"FailedPutCount": 0, "RequestResponses": [
            {"ErrorCode": "ServiceUnavailableException"} if b"refuse-me" in r["Data"] else {"RecordId": "x"}
            for r in Records]}


def record(request_id: str, **more: Any) -> dict[str, Any]:
    return {"request_id": request_id, "timestamp": "2026-05-12T10:00:00Z", "eval_scores": {"overall": 0.5}, **more}


def test_each_item_gets_its_own_answer_and_only_taken_records_are_marked() -> None:
    table, client = FlakyTable(refuse=set()), Client()
    stream = evals.EvalStream(client, "s")
    result = evals.record_evals(table, stream, "p", [record("a"), record("refuse-me"), record("a"), {"x": 1},
                                                     record("b", output="x" * (evals.MAX_RECORD_BYTES + 1))],
                                IngestPolicy())
    assert [r.status for r in result.results] == [201, 503, 200, 422, 422]
    assert result.results[4].errors[0].field == "record"
    assert {k[0] for k in table.items} == {"EVAL#p#a"}  # the refused record is not marked: a resend goes through
    assert len(client.calls) == 1 and len(client.calls[0]) == 2  # a request_id twice in a batch: sent once
    again = evals.record_evals(table, stream, "p", [record("a"), record("a", prompt="other")], IngestPolicy())
    assert [r.status for r in again.results] == [200, 409]


def test_a_marker_is_kept_for_the_dedup_window_not_the_feedbacks_retention() -> None:
    table, now = FlakyTable(refuse=set()), datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    policy = IngestPolicy(retention_days=730, eval_dedup_days=14)
    evals.record_evals(table, evals.EvalStream(Client(), "s"), "p", [record("a")], policy, now)
    [marker] = table.items.values()
    assert marker["expires_at"] == int((now + timedelta(days=14)).timestamp())


def test_calls_to_the_stream_stay_within_its_limits() -> None:
    lines = [b"x" * 100_000 for _ in range(100)] + [b"y"] * 900
    chunks = evals._chunks(lines)
    assert [len(c) for c in chunks] == [41, 41, 18 + 482, 418]
    assert all(sum(map(len, c)) <= evals.FIREHOSE_BATCH_BYTES and len(c) <= evals.FIREHOSE_BATCH for c in chunks)
    assert [line for c in chunks for line in c] == lines
