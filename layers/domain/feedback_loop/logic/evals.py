"""Eval log records in through the API (POST /v1/evals): once per (project, request_id), each item
of a batch on its own, delivered to the eval-log stream (Amazon Data Firehose), which writes them to
`eval-logs/<project>/dt=YYYY-MM-DD/` in the data bucket, gzip JSON Lines.

An item is reported 201 only once the stream has taken it (the stream keeps a record it took until
it is in S3, retrying, and puts what S3 refuses under `eval-logs-errors/`); 200 when its request_id
was accepted before with the same record, 409 with another record; 422 with the fields that break
the contract; 503 when the stream did not take it (send it again). The table keeps one small item
per accepted record, its fingerprint, which is what makes a resent batch safe, for `eval_dedup_days`
(EvalDedupDays, 14: TTL), not for the feedback's retention: a record resent later is delivered again,
and the analysis skips the repeat as a duplicate_request_id. Written after the
stream took the record, 25 to a BatchWriteItem call (a conditional write per record would cost
500 calls a batch and guard nothing: the record is delivered by then): if that write fails, the
record is still answered 201, and only a resend of it would be delivered twice (the analysis then
drops repeats of a labelled request); two requests racing with the same new request_id both
deliver it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import TypeAdapter, ValidationError

from feedback_loop.dal import items as keys
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.logic.ingest import IngestPolicy
from feedback_loop.models.errors import validation_field_errors
from feedback_loop.models.evallog import EvalBatchResult, EvalItemResult, EvalRecord
from feedback_loop.models.feedback import FieldError

_records: TypeAdapter[Any] = TypeAdapter(EvalRecord)
# What the stream's dynamic partitioning reads (template.yaml, EvalLogStream): a record's project and
# its UTC day, added by the API under a key of its own.
ROUTING = "_feedback_loop"
FIREHOSE_BATCH = 500  # PutRecordBatch's limits: records and bytes a call, bytes a record
FIREHOSE_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024


@dataclass(frozen=True)
class EvalStream:
    """Where accepted records go: a Firehose client and the delivery stream's name."""

    client: Any
    name: str

    def put(self, lines: Sequence[bytes]) -> list[bool]:
        """Each line given to the stream; whether the stream took it."""
        taken: list[bool] = []
        for chunk in _chunks(lines):
            try:
                answer = self.client.put_record_batch(DeliveryStreamName=self.name,
                                                      Records=[{"Data": line} for line in chunk])
            except (ClientError, BotoCoreError):
                taken += [False] * len(chunk)
                continue
            taken += ["ErrorCode" not in response for response in answer["RequestResponses"]]
        return taken


def _chunks(lines: Sequence[bytes]) -> list[Sequence[bytes]]:
    """The lines in calls of at most FIREHOSE_BATCH records and FIREHOSE_BATCH_BYTES."""
    chunks: list[list[bytes]] = []
    size = 0
    for line in lines:
        if not chunks or len(chunks[-1]) == FIREHOSE_BATCH or size + len(line) > FIREHOSE_BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
    return chunks


def fingerprint(raw: dict[str, Any]) -> str:
    """Hash of the record as sent (key order aside): a resend is the same record, a reused
    request_id with another body is not."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _line(raw: dict[str, Any], record: EvalRecord, project: str, now: datetime) -> bytes:
    """The record as sent, with where it goes (project, UTC day) for the stream's partitioning."""
    day = record.timestamp.astimezone(timezone.utc).date() if record.timestamp.tzinfo else record.timestamp.date()
    routed = {**raw, ROUTING: {"project": project, "dt": day.isoformat(), "received_at": keys.timestamp_text(now)}}
    return json.dumps(routed, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def record_evals(table: FeedbackTable, stream: EvalStream, project: str, raw_records: list[Any],
                 policy: IngestPolicy, now: datetime | None = None) -> EvalBatchResult:
    """Validates each record on its own, sends the new valid ones to the stream, reports every item
    (module docstring)."""
    now = now or datetime.now(timezone.utc)
    results: list[EvalItemResult | None] = [None] * len(raw_records)
    valid: list[tuple[int, dict[str, Any], dict[str, Any], bytes]] = []  # index, raw, marker item, line
    for index, raw in enumerate(raw_records):
        try:
            record = _records.validate_python(raw)
        except ValidationError as error:
            results[index] = EvalItemResult(index=index, status=422, errors=validation_field_errors(error))
            continue
        marker = {**keys.eval_key(project, record.request_id), "entity": "eval", "project": project,
                  "request_id": record.request_id, "fingerprint": fingerprint(raw),
                  "received_at": keys.timestamp_text(now), "expires_at": policy.eval_marker_expires_at(now)}
        line = _line(raw, record, project, now)
        if len(line) > MAX_RECORD_BYTES:
            results[index] = EvalItemResult(index=index, status=422, request_id=record.request_id, errors=[FieldError(
                field="record", message=f"is {len(line):,} bytes as JSON, over the stream's {MAX_RECORD_BYTES:,}")])
            continue
        valid.append((index, raw, marker, line))

    first: dict[tuple[str, str], tuple[dict[str, Any], bytes]] = {}
    for _, _, marker, line in valid:
        first.setdefault(keys.item_key(marker), (marker, line))  # a request_id twice in a batch: the first
    existing = table.get_many(list(first))
    new = [(key, marker, line) for key, (marker, line) in first.items() if key not in existing]
    taken = stream.put([line for _, _, line in new])
    delivered = [marker for (_, marker, _), ok in zip(new, taken) if ok]
    refused = {key for (key, _, _), ok in zip(new, taken) if not ok}
    table.put_all(delivered)  # unconditional: the records are delivered whatever the markers' fate
    for index, _, marker, _ in valid:
        key = keys.item_key(marker)
        request_id = marker["request_id"]
        if key in refused:
            results[index] = EvalItemResult(index=index, status=503, request_id=request_id, errors=[FieldError(
                field="record", message="not accepted: the delivery stream is busy, send it again")])
        elif key not in existing and marker is first[key][0]:
            results[index] = EvalItemResult(index=index, status=201, request_id=request_id)
        else:
            original = existing.get(key, first[key][0])
            same = original.get("fingerprint") == marker["fingerprint"]
            conflict = FieldError(field="request_id", message="was already accepted with another record")
            results[index] = EvalItemResult(index=index, status=200 if same else 409, request_id=request_id,
                                            errors=[] if same else [conflict])
    return EvalBatchResult.of([r for r in results if r is not None])
