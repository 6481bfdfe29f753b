"""DynamoDB access for feedback events, changes and API keys (one table, see items.py).

Only this module talks to DynamoDB. Every read that serves a request is a GetItem, a Query or a
BatchGetItem on a key; there is no Scan anywhere in the product.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from feedback_loop.dal import items as keys
from feedback_loop.models.errors import StorageUnavailable

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
UNPROCESSED_RETRIES = 6
CONDITIONAL_ATTEMPTS = 3  # conditional writes whose stored item could not be read, before a 503
WRITE_CONCURRENCY = 8  # conditional writes of one batch in flight at once

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Throttling and 5xx are retried by botocore itself (standard mode: 3 attempts in all, jittered
# backoff of at most 1 s then 2 s); short timeouts keep a stuck call inside the API function's time
# budget. (`max_attempts` in this dict would count retries, not attempts: 3 would mean 4 calls.)
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=1,
    read_timeout=2,
)
WORST_CALL_SECONDS = 3 * (1 + 2) + (1 + 2)  # attempts x (connect + read timeouts) + backoffs
# The scheduled functions have minutes, not seconds: more attempts, room for long queries.
PATIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 8}, connect_timeout=5, read_timeout=60)


def _to_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items()}


def _from_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    return boto3.client("dynamodb", config=CLIENT_CONFIG)


@lru_cache(maxsize=1)
def patient_dynamodb_client() -> Any:
    """For the scheduled and event-driven functions, which are not answering an HTTP request."""
    return boto3.client("dynamodb", config=PATIENT_CONFIG)


@dataclass
class PutOutcome:
    """What put_new did: items whose key was already stored (the stored item, by key), and items not
    written because the store failed or the time ran out."""

    found: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    not_written: list[dict[str, Any]] = field(default_factory=list)


class FeedbackTable:
    """The feedback-loop table. Items are plain dicts in, plain dicts out (items.py shapes them)."""

    def __init__(self, table_name: str, client: Any | None = None):
        self.table_name = table_name
        self.client = client or dynamodb_client()
        # time.monotonic() by which batch operations must be done (the API sets it per request from
        # Lambda's remaining time): a batch call that could overrun it is not started
        self.deadline: float | None = None

    def _can_call(self) -> bool:
        return self.deadline is None or self.deadline - time.monotonic() >= WORST_CALL_SECONDS

    # --- single items -------------------------------------------------------------------------

    def put_if_absent(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """Writes the item unless its key exists; returns the stored item in that case, else None.

        "Already stored" is only ever answered with the stored item in hand: when the condition
        failed but neither the failure nor a consistent read returns the item, the write is tried
        again, and after CONDITIONAL_ATTEMPTS the store is reported unavailable (the API's 503).
        """
        for attempt in range(CONDITIONAL_ATTEMPTS):
            if attempt and not self._can_call():
                break
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item=_to_dynamo(item),
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                old = error.response.get("Item")
                if old:
                    return _from_dynamo(old)
                stored = self.get(item["pk"], item["sk"])
                if stored is not None:
                    return stored
            _backoff(attempt)
        raise StorageUnavailable("the write's condition failed but no stored item could be read")

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table_name, Key=_to_dynamo({"pk": pk, "sk": sk}), ConsistentRead=True
        )
        return _from_dynamo(response["Item"]) if "Item" in response else None

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=_to_dynamo({"pk": pk, "sk": sk}))

    def _set(self, pk: str, sk: str, values: dict[str, Any], **call: Any) -> dict[str, Any]:
        """One UpdateItem setting the attributes; `call` adds the call's other arguments."""
        return self.client.update_item(
            TableName=self.table_name,
            Key=_to_dynamo({"pk": pk, "sk": sk}),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
            ExpressionAttributeNames={f"#f{i}": name for i, name in enumerate(values)},
            ExpressionAttributeValues={f":v{i}": _serializer.serialize(v) for i, v in enumerate(values.values())},
            **call,
        )

    def update(self, pk: str, sk: str, values: dict[str, Any]) -> None:
        self._set(pk, sk, values, ConditionExpression="attribute_exists(pk)")

    def merge(self, pk: str, sk: str, values: dict[str, Any]) -> dict[str, Any]:
        """Sets the attributes, creating the item if need be, and returns the whole item as it is
        after this write: one UpdateItem, so two callers merging into one item each see the other's
        attributes or are seen by it (numbers as Decimal, as DynamoDB keeps them)."""
        return _from_dynamo(self._set(pk, sk, values, ReturnValues="ALL_NEW")["Attributes"])

    def merge_many(self, updates: Sequence[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any] | None]:
        """merge for each (pk, sk, values), WRITE_CONCURRENCY at a time; None for one that failed
        after the retries or could not be started within the deadline."""

        def one(update: tuple[str, str, dict[str, Any]]) -> dict[str, Any] | None:
            try:
                self._check_deadline()
                return self.merge(*update)
            except (ClientError, StorageUnavailable):
                return None

        return self._concurrently(one, updates)

    def add_to_counter(self, pk: str, sk: str, amount: int, expires_at: int) -> int:
        """Adds `amount` to the item's counter `n` (creating the item) and returns the new total.
        One UpdateItem: concurrent callers' additions all count."""
        answer = self.client.update_item(
            TableName=self.table_name,
            Key=_to_dynamo({"pk": pk, "sk": sk}),
            UpdateExpression="ADD n :amount SET expires_at = if_not_exists(expires_at, :expires), entity = :entity",
            ExpressionAttributeValues={":amount": {"N": str(amount)}, ":expires": {"N": str(expires_at)},
                                       ":entity": {"S": "rate"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["n"]["N"])

    # --- many items ---------------------------------------------------------------------------

    def get_many(self, item_keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Consistent BatchGetItem of up to any number of keys; returns the ones that exist."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        unique = list(dict.fromkeys(item_keys))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            request = {
                self.table_name: {
                    "Keys": [_to_dynamo({"pk": pk, "sk": sk}) for pk, sk in unique[start:start + BATCH_GET_LIMIT]],
                    "ConsistentRead": True,
                }
            }
            for attempt in range(UNPROCESSED_RETRIES + 1):
                if not self._can_call():
                    raise StorageUnavailable("no time left to read the rest within the request's budget")
                response = self.client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    item = _from_dynamo(raw)
                    found[keys.item_key(item)] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(attempt)
            if request:
                raise StorageUnavailable("DynamoDB left keys unread after retries")
        return found

    def put_all(self, new_items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """BatchWriteItem, BATCH_WRITE_LIMIT items a call: unconditional puts (an item already there
        is replaced), for items whose writing only records what happened elsewhere. Returns the
        items not written after the retries (or the deadline)."""
        left: list[dict[str, Any]] = []
        for start in range(0, len(new_items), BATCH_WRITE_LIMIT):
            chunk = list({keys.item_key(i): i for i in new_items[start:start + BATCH_WRITE_LIMIT]}.values())
            request = {self.table_name: [{"PutRequest": {"Item": _to_dynamo(item)}} for item in chunk]}
            try:
                for attempt in range(UNPROCESSED_RETRIES + 1):
                    self._check_deadline()
                    request = self.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                    if not request:
                        break
                    _backoff(attempt)
            except (ClientError, StorageUnavailable):
                left += chunk
                continue
            left += [_from_dynamo(r["PutRequest"]["Item"]) for r in request.get(self.table_name, [])]
        return left

    def put_new(self, new_items: Sequence[dict[str, Any]]) -> PutOutcome:
        """put_if_absent for each item, WRITE_CONCURRENCY at a time: conditional writes, so that two
        requests carrying the same key cannot both be told their item was stored (BatchWriteItem
        would let the second overwrite the first). An item whose write failed after the retries,
        or that could not be started within the deadline, comes back in `not_written`."""
        outcome = PutOutcome()

        def put(item: dict[str, Any]) -> None:
            try:
                self._check_deadline()
                existing = self.put_if_absent(item)
            except (ClientError, StorageUnavailable):
                outcome.not_written.append(item)  # list.append is atomic
                return
            if existing is not None:
                outcome.found[keys.item_key(item)] = existing

        self._concurrently(put, new_items)
        return outcome

    def _check_deadline(self) -> None:
        if not self._can_call():
            raise StorageUnavailable("no time left to write within the request's budget")

    @staticmethod
    def _concurrently(work: Callable[[Any], Any], inputs: Sequence[Any]) -> list[Any]:
        """work on each input, WRITE_CONCURRENCY at a time (one alone in this thread); the results in order."""
        if len(inputs) <= 1:
            return [work(x) for x in inputs]
        with ThreadPoolExecutor(max_workers=min(WRITE_CONCURRENCY, len(inputs))) as pool:
            return list(pool.map(work, inputs))

    # --- queries ------------------------------------------------------------------------------

    def query_partition(self, pk: str, sk_prefix: str | None = None) -> Iterator[dict[str, Any]]:
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": pk}
        if sk_prefix is not None:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = sk_prefix
        yield from self._query(
            KeyConditionExpression=condition, ExpressionAttributeValues=_to_dynamo(values), ConsistentRead=True
        )

    def query_index(self, gsi1pk: str, low: str | None = None, high: str | None = None) -> Iterator[dict[str, Any]]:
        condition = "gsi1pk = :pk"
        values: dict[str, Any] = {":pk": gsi1pk}
        if low is not None and high is not None:
            condition += " AND gsi1sk BETWEEN :low AND :high"
            values.update({":low": low, ":high": high})
        yield from self._query(
            IndexName="gsi1", KeyConditionExpression=condition, ExpressionAttributeValues=_to_dynamo(values)
        )

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(TableName=self.table_name, **kwargs):
            for raw in page.get("Items", []):
                yield _from_dynamo(raw)

    def feedback_in_window(
        self, project: str, since: datetime, until: datetime, shards: int, concurrency: int = 8
    ) -> Iterator[dict[str, Any]]:
        """Feedback items whose timestamp is in [since, until]: one Query per day and shard of the
        index, run `concurrency` at a time (a long window is many small partitions)."""
        low, high = keys.timestamp_text(since), keys.timestamp_text(until) + "\uffff"
        partitions = [keys.day_partition(project, day, shard)
                      for day in keys.days_between(since, until) for shard in range(shards)]
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for items in pool.map(lambda partition: list(self.query_index(partition, low, high)), partitions):
                yield from items


def _backoff(attempt: int) -> None:
    # Full jitter, capped, so that retries of many clients spread out.
    time.sleep(random.uniform(0, min(1.0, 0.025 * 2**attempt)))
