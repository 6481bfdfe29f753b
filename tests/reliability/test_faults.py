"""DynamoDB throttling, 5xx, refused batch items and lost responses between the API function
and the emulator: the API retries within its budget, then answers 503 with Retry-After, never 500,
never a partial batch reported as stored; nothing acknowledged is lost or stored twice."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from feedback_loop.client import FeedbackClient
from feedback_loop.dal import items
from feedback_loop.dal.store import dynamodb_client
from feedback_loop.models.errors import StorageUnavailable

from .faults import Faults

pytestmark = pytest.mark.integration


@pytest.fixture
def faults(stack) -> Faults:
    return Faults(dynamodb_client(), seed=5)  # the client the API function's containers share


def stored(table, project: str, request_id: str) -> list[dict]:
    return list(table.query_partition(items.request_pk(project, request_id)))


def post(stack, key: str, body: dict) -> requests.Response:
    return requests.post(f"{stack.api_url}/v1/feedback", json=body, headers={"x-api-key": key}, timeout=30)


def test_a_failing_store_answers_503_with_retry_after_and_stores_nothing(stack, table, project, api_key, faults):
    body = {"request_id": "f-1", "feedback_type": "explicit_rating", "value": 4, "event_id": "e-1"}
    batch = {"events": [{**body, "event_id": f"b-{i}"} for i in range(5)]}
    with faults.answer("server", operations=("PutItem", "BatchGetItem")):
        single = post(stack, api_key, body)
        several = requests.post(f"{stack.api_url}/v1/feedback/batch", json=batch, headers={"x-api-key": api_key},
                                timeout=30)
    assert single.status_code == 503 and single.headers["Retry-After"] == "1"
    assert "nothing was stored" in single.json()["error"]["message"]
    assert several.status_code == 503  # the whole batch: none of it is reported as stored
    assert faults.injected["server:PutItem"] == 3  # 3 attempts in all (CLIENT_CONFIG), then 503
    assert stored(table, project, "f-1") == []


def test_a_failing_key_lookup_is_503_not_a_crash(stack, project, api_key, faults):
    with faults.answer("throttle", operations=("GetItem",)):
        answer = post(stack, api_key, {"request_id": "f-2", "feedback_type": "explicit_thumbs_up", "value": True})
    assert answer.status_code == 503 and answer.headers["Retry-After"]


def test_throttling_is_absorbed_by_retries_and_nothing_counts_twice(stack, table, project, api_key, faults):
    bodies = [{"request_id": f"t-{i % 20}", "feedback_type": "explicit_rating", "value": 1 + i % 5,
               "user_id": f"u{i}", "event_id": f"t-{i}"} for i in range(80)]

    def first_attempt(body: dict) -> tuple[int, float]:
        began = time.monotonic()
        return post(stack, api_key, body).status_code, time.monotonic() - began

    with faults.answer("throttle", share=0.5, operations=("PutItem",)):
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(first_attempt, bodies))
        # what the first attempts could not store, a client resends with the same event_id
        client = FeedbackClient(stack.api_url, api_key, retries=8, backoff_factor=0.01)
        for body, (status, _) in zip(bodies, answers):
            if status == 503:
                resent = client.send(body["request_id"], body["feedback_type"], body["value"],
                                     user_id=body["user_id"], event_id=body["event_id"])
                assert resent.event_id == body["event_id"]
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {201, 503} and statuses.count(201) > 55  # 3 attempts each: about 1 in 8 fails
    assert max(seconds for _, seconds in answers) < 28  # inside the API function's timeout
    assert faults.injected["throttle:PutItem"] > 30
    kept = [item for i in range(20) for item in stored(table, project, f"t-{i}")]
    assert sorted(item["event_id"] for item in kept) == sorted(b["event_id"] for b in bodies)


def test_storage_calls_stop_before_the_function_times_out(table) -> None:
    """With less time left than one worst-case call, no batch call is started: every item comes back
    unwritten (the API reports them 503), nothing is half-done, and reads refuse rather than overrun."""
    from feedback_loop.dal.store import WORST_CALL_SECONDS, FeedbackTable

    short = FeedbackTable(table.table_name)
    short.deadline = time.monotonic() + WORST_CALL_SECONDS - 1
    rows = [{"pk": "DEADLINE#x", "sk": f"EV#{i:03d}", "entity": "test"} for i in range(60)]
    outcome = short.put_new(rows)
    assert sorted(outcome.not_written, key=str) == sorted(rows, key=str) and outcome.found == {}
    assert list(table.query_partition("DEADLINE#x")) == []
    with pytest.raises(StorageUnavailable):
        short.get_many([(r["pk"], r["sk"]) for r in rows])
    short.deadline = time.monotonic() + WORST_CALL_SECONDS + 5  # enough time: it all goes
    outcome = short.put_new(rows)
    assert outcome.not_written == [] and outcome.found == {}
    assert len(short.get_many([(r["pk"], r["sk"]) for r in rows])) == 60


def test_batch_items_the_store_refuses_are_reported_503_not_stored(stack, table, project, api_key, faults):
    events = [{"request_id": "u-1", "feedback_type": "implicit_usage", "value": True, "event_id": f"u-{i}"}
              for i in range(30)]
    with faults.answer("throttle", operations=("PutItem",)):
        answer = requests.post(f"{stack.api_url}/v1/feedback/batch", json={"events": events},
                               headers={"x-api-key": api_key}, timeout=60)
    assert answer.status_code == 207
    assert {r["status"] for r in answer.json()["results"]} == {503}  # reported, never claimed as stored
    assert faults.injected["throttle:PutItem"] == 3 * 30  # each conditional write tried 3 times
    assert stored(table, project, "u-1") == []

    with faults.answer("throttle", share=0.7, operations=("PutItem",)):
        result = FeedbackClient(stack.api_url, api_key, retries=10, backoff_factor=0.01).send_batch(events)
    assert {r.status for r in result.results} == {201}
    assert sorted(i["event_id"] for i in stored(table, project, "u-1")) == sorted(e["event_id"] for e in events)


def test_a_write_whose_answer_was_lost_is_stored_once(stack, table, project, api_key, faults):
    client = FeedbackClient(stack.api_url, api_key, retries=3, backoff_factor=0.01)
    with faults.lose_responses("PutItem", times=1):
        event = client.rate("l-1", 5, user_id="u1", event_id="lost-1")
    assert faults.injected["lost:PutItem"] == 1
    assert event.event_id == "lost-1"
    [item] = stored(table, project, "l-1")
    assert item["event_id"] == "lost-1"
    assert client.summary("l-1").events == 1
