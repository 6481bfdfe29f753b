"""Hostile bodies: what Python's JSON parser would crash on or quietly accept (deep nesting, huge
integers, NaN and infinities, invalid UTF-8) is refused with a 4xx naming the field, never a 5xx,
and nothing is stored."""

from __future__ import annotations

import pytest
import requests

from feedback_loop.dal import items

pytestmark = pytest.mark.integration

BASE = '{"request_id": "%s", "feedback_type": "implicit_usage", "value": true, '
CASES = {
    "deeply nested array": (BASE + '"metadata": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}", 400, "body"),
    "deeply nested object": (BASE + '"metadata": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}", 400, "body"),
    "nested deeper than allowed": (BASE + '"metadata": ' + '{"a": ' * 60 + "1" + "}" * 60 + "}", 422, "metadata"),
    "infinity": (BASE + '"metadata": {"a": 1e999}}', 400, "body"),
    "NaN": (BASE + '"metadata": {"a": NaN}}', 400, "body"),
    "5,000-digit integer": (BASE + '"metadata": {"a": ' + "9" * 5000 + "}}", 400, "body"),
    "metadata over 4 KB": (BASE + '"metadata": {' + ", ".join(f'"k{i}": 1' for i in range(600)) + "}}", 422,
                           "metadata"),
    "event_id of 10,000 characters": (BASE + '"event_id": "' + "e" * 10_000 + '"}', 422, "event_id"),
    "lone surrogate in a comment": ('{"request_id": "%s", "feedback_type": "explicit_text_comment", '
                                    '"value": "a\\ud800b"}', 422, "value"),
    "a list instead of an object": ('["%s"]', 422, "body"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_bodies_are_refused_naming_the_field(stack, table, project, api_key, case) -> None:
    template, status, field = CASES[case]
    request_id = f"hostile-{abs(hash(case)) % 10**8}"
    body = (template % request_id).encode()
    answer = requests.post(f"{stack.api_url}/v1/feedback", data=body, timeout=60,
                           headers={"x-api-key": api_key, "Content-Type": "application/json"})
    assert answer.status_code == status, answer.text[:300]
    assert field in [f["field"] for f in answer.json()["error"]["fields"]]
    assert list(table.query_partition(items.request_pk(project, request_id))) == []


def test_invalid_utf8_is_refused(stack, api_key) -> None:
    body = b'{"request_id": "r", "feedback_type": "implicit_usage", "value": true, "user_id": "\xff\xfe"}'
    answer = requests.post(f"{stack.api_url}/v1/feedback", data=body, timeout=30,
                           headers={"x-api-key": api_key, "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["fields"][0]["field"] == "body"


def test_a_hostile_batch_is_refused_whole_and_a_bad_item_alone(stack, table, project, api_key) -> None:
    deep = '{"events": [' + (BASE % "hb-1") + '"metadata": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}]}"
    answer = requests.post(f"{stack.api_url}/v1/feedback/batch", data=deep.encode(), timeout=30,
                           headers={"x-api-key": api_key, "Content-Type": "application/json"})
    assert answer.status_code == 400
    mixed = {"events": [{"request_id": "hb-2", "feedback_type": "implicit_usage", "value": True, "event_id": "ok"},
                        {"request_id": "hb-2", "feedback_type": "explicit_rating", "value": 9, "event_id": "bad"}]}
    answer = requests.post(f"{stack.api_url}/v1/feedback/batch", json=mixed, timeout=30, headers={"x-api-key": api_key})
    assert [r["status"] for r in answer.json()["results"]] == [201, 422]
    assert [i["event_id"] for i in table.query_partition(items.request_pk(project, "hb-2"))] == ["ok"]


def test_comments_and_edits_are_stored_as_given(client) -> None:
    payload = '<script>alert(1)</script> \'; DROP TABLE feedback; -- \u202e \u0000 \U0001f600'
    client.comment("hostile-text", payload, user_id="u")
    client.edited("hostile-text", payload)
    summary = client.summary("hostile-text")
    assert summary.comments[0].text == payload  # data, byte for byte; the report and widget escape it
