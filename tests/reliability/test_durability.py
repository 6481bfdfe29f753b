"""What the API acknowledged is stored, and stays stored: concurrent first writes to one partition,
a condition that fails with nothing to read, two batches racing with one event_id, and a kill -9 in
the middle of a load run."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
import requests
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.server import ThreadedMotoServer

from feedback_loop.dal import items
from feedback_loop.dal.store import dynamodb_client
from feedback_loop.local.stack import free_port, local_aws_environment, read_state
from feedback_loop.local.template import REGION

from ..serving import serve
from .faults import Faults
from .loadgen import make_events, run_load, stored_feedback

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
KEY_SCHEMA = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
              "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                       {"AttributeName": "sk", "AttributeType": "S"}],
              "BillingMode": "PAY_PER_REQUEST"}


class SlowNewPartitions(defaultdict):
    """moto's table of partitions, 20 ms slower between finding a partition missing and creating it:
    the window in which two concurrent first writes to one partition each create their own."""

    def __missing__(self, key: Any) -> Any:
        time.sleep(0.02)
        return super().__missing__(key)


@contextmanager
def slow_new_partitions(endpoint: str, table: str) -> Iterator[Any]:
    env = local_aws_environment(endpoint)
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=env["AWS_REGION"],
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_table(TableName=table, **KEY_SCHEMA)
    backend_table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(table)
    backend_table.items = SlowNewPartitions(dict, backend_table.items)
    yield client


def first_writes(client: Any, table: str, partitions: int = 20, writers: int = 8) -> tuple[int, int]:
    """`writers` threads write one item each to every new partition at the same moment; returns
    (writes answered 200, items stored)."""
    barriers = [threading.Barrier(writers) for _ in range(partitions)]
    answered = []

    def write(index: int) -> None:
        partition, item = divmod(index, writers)
        barriers[partition].wait()
        client.put_item(TableName=table, Item={"pk": {"S": f"p{partition}"}, "sk": {"S": f"s{item}"}},
                        ConditionExpression="attribute_not_exists(pk)")
        answered.append(index)

    with ThreadPoolExecutor(2 * writers) as pool:
        list(pool.map(write, range(partitions * writers)))
    stored = sum(client.query(TableName=table, KeyConditionExpression="pk = :p", ConsistentRead=True,
                              ExpressionAttributeValues={":p": {"S": f"p{p}"}})["Count"] for p in range(partitions))
    return len(answered), stored


def test_concurrent_first_writes_to_one_partition_are_all_kept(stack) -> None:
    # moto's own server, with the same injected delay, answers every write 200 and keeps a fraction:
    # the cause of acknowledged events missing under load
    raw = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    raw.start()
    try:
        host, port = raw.get_host_and_port()
        name = f"raw-{uuid.uuid4().hex[:6]}"
        with slow_new_partitions(f"http://{host}:{port}", name) as client:
            answered, stored = first_writes(client, name)
    finally:
        raw.stop()
    assert answered == 160 and stored < answered

    # the local stack's emulator runs one request at a time: every acknowledged write is there
    name = f"ours-{uuid.uuid4().hex[:6]}"
    with slow_new_partitions(stack.aws_endpoint, name) as client:
        assert first_writes(client, name) == (160, 160)


def test_a_failed_condition_with_nothing_stored_is_never_answered_as_stored(stack, table, project, api_key) -> None:
    faults = Faults(dynamodb_client(), seed=2)
    headers = {"x-api-key": api_key}
    body = {"request_id": "v-1", "feedback_type": "explicit_thumbs_up", "value": True, "event_id": "v-1"}
    batch = {"events": [{**body, "event_id": f"vb-{i}"} for i in range(5)]}
    with faults.answer("vanished", operations=("PutItem",)):
        single = requests.post(f"{stack.api_url}/v1/feedback", json=body, headers=headers, timeout=30)
        several = requests.post(f"{stack.api_url}/v1/feedback/batch", json=batch, headers=headers, timeout=30)
    # the condition "failed", the stored item could not be read: 503 to resend, never 200 "already stored"
    assert single.status_code == 503 and single.headers["Retry-After"]
    assert [r["status"] for r in several.json()["results"]] == [503] * 5
    assert faults.injected["vanished:PutItem"] == 3 + 5 * 3  # each write tried 3 times, then given up
    assert list(table.query_partition(items.request_pk(project, "v-1"))) == []

    with faults.answer("vanished", share=0.5, operations=("PutItem",)):  # a retry gets through
        statuses = []
        for _ in range(10):
            statuses.append(requests.post(f"{stack.api_url}/v1/feedback", json=body, headers=headers,
                                          timeout=30).status_code)
            if statuses[-1] != 503:
                break
    assert statuses[-1] == 201 and set(statuses[:-1]) <= {503}
    [stored] = table.query_partition(items.request_pk(project, "v-1"))
    assert stored["event_id"] == "v-1"


def test_two_batches_racing_with_one_event_id_store_one_body(stack, table, project, api_key) -> None:
    headers = {"x-api-key": api_key}
    outcomes = []
    for round_ in range(12):
        barrier = threading.Barrier(2)

        def send(value: int) -> tuple[int, int]:
            event = {"request_id": f"race-{round_}", "feedback_type": "explicit_rating", "value": value,
                     "event_id": f"race-{round_}"}
            others = [{**event, "event_id": f"other-{round_}-{value}-{i}"} for i in range(20)]
            barrier.wait()
            answer = requests.post(f"{stack.api_url}/v1/feedback/batch", json={"events": [*others, event]},
                                   headers=headers, timeout=60)
            return value, answer.json()["results"][-1]["status"]

        with ThreadPoolExecutor(2) as pool:
            answers = dict(pool.map(send, (2, 5)))
        [stored] = [i for i in table.query_partition(items.request_pk(project, f"race-{round_}"))
                    if i["event_id"] == f"race-{round_}"]
        # one body is stored and acknowledged 201; the other is told 409, never also 201
        assert sorted(answers.values()) == [201, 409], answers
        assert answers[int(stored["value"])] == 201
        outcomes.append(answers)
    assert len(outcomes) == 12


def test_a_kill_9_in_the_middle_of_a_load_run_loses_nothing_acknowledged(tmp_path: Path) -> None:
    events = make_events(3000, seed=21)
    sent = {e["event_id"]: e for e in events}
    first = serve(tmp_path, "KeyRateLimitPerMinute=0", extra=("--snapshot-seconds", "1"))
    result: dict[str, Any] = {}
    loader = threading.Thread(target=lambda: result.update(load=run_load(
        first.url, first.key, events, clients=16, seed=22, server_may_die=True)))
    loader.start()
    journal = tmp_path / "journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once a snapshot has folded part of the load and more came since
        if (tmp_path / "snapshot").exists() and sum(f.stat().st_size for f in journal.glob("*.jsonl")) > 100_000:
            break
        time.sleep(0.2)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=30)
    loader.join(timeout=300)
    load = result["load"]
    assert 0 < len(load.acknowledged) < len(events) and load.unanswered  # killed mid-run, requests in flight

    second = serve(tmp_path)
    try:
        assert "journal lines" in second.output
        state = read_state(tmp_path)
        client = boto3.client("dynamodb", endpoint_url=state["aws_endpoint"], region_name=REGION,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        stored = stored_feedback("shop", state["table"], client)
        stored_ids = [raw["event_id"]["S"] for raw in stored]
        assert len(stored_ids) == len(set(stored_ids))  # none twice
        assert set(load.acknowledged) <= set(stored_ids)  # every acknowledged event is back
        assert set(stored_ids) - set(load.acknowledged) <= load.unanswered  # the rest were in flight
        for raw in stored:  # and each is whole: what was sent, every attribute there
            event = sent[raw["event_id"]["S"]]
            assert raw["request_id"]["S"] == event["request_id"]
            assert raw["feedback_type"]["S"] == event["feedback_type"]
            assert raw["user_id"]["S"] == event["user_id"]
            assert {"value", "timestamp", "received_at", "gsi1pk", "gsi1sk", "fingerprint"} <= set(raw)
        # the API agrees: every acknowledged event answers 200 "already stored" with its body
        resent = [sent[event_id] for event_id in sorted(load.acknowledged)[:100]]
        answer = requests.post(f"{second.url}/v1/feedback/batch", json={"events": resent},
                               headers={"x-api-key": first.key}, timeout=60)
        assert {r["status"] for r in answer.json()["results"]} == {200}
        restored = next(line for line in second.output.splitlines() if "restored:" in line)
        print(f"kill -9 mid-load: {len(load.acknowledged)} acknowledged, {len(load.unanswered)} in flight, "
              f"{len(stored_ids)} stored after restart; {restored.strip()}")
    finally:
        second.stop()
