"""The feedback API end to end: HTTP → local gateway → API function → emulated DynamoDB."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from feedback_loop.dal import items as keys
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.logic.keys import create_key, revoke_key

from ..conftest import Api

pytestmark = pytest.mark.integration


def stored_events(table: FeedbackTable, project: str, request_id: str) -> list[dict]:
    return list(table.query_partition(keys.request_pk(project, request_id)))


def rid() -> str:
    return f"req-{uuid.uuid4().hex[:12]}"


def test_event_is_stored_and_a_retry_returns_the_original(http: Api, table: FeedbackTable, project: str) -> None:
    request_id = rid()
    body = {"request_id": request_id, "feedback_type": "explicit_rating", "value": 4, "user_id": "u1",
            "user_cohort": "pro", "event_id": "evt-1", "metadata": {"ui": "sidebar", "score": 0.5}}
    first = http.post("/v1/feedback", body)
    assert first.status_code == 201
    created = first.json()
    assert created["event_id"] == "evt-1" and created["value"] == 4 and created["metadata"] == body["metadata"]
    again = http.post("/v1/feedback", body)
    assert again.status_code == 200
    assert again.json() == created
    assert len(stored_events(table, project, request_id)) == 1


def test_reusing_an_event_id_with_another_body_is_a_conflict(http: Api, table: FeedbackTable, project: str) -> None:
    request_id = rid()
    body = {"request_id": request_id, "feedback_type": "explicit_rating", "value": 4, "event_id": "evt-x"}
    assert http.post("/v1/feedback", body).status_code == 201
    conflict = http.post("/v1/feedback", {**body, "value": 1})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["fields"][0]["field"] == "event_id"
    [item] = stored_events(table, project, request_id)
    assert item["value"] == 4


def test_events_without_event_id_get_one_and_timestamp_defaults_to_receipt(http: Api) -> None:
    before = datetime.now(timezone.utc)
    response = http.post("/v1/feedback", {"request_id": rid(), "feedback_type": "implicit_usage", "value": True})
    assert response.status_code == 201
    event = response.json()
    assert len(event["event_id"]) == 32
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert event["timestamp"] == event["received_at"]


BAD_INPUTS = [
    ("malformed json", "{\"request_id\": ", 400, "body"),
    ("not an object", "[1, 2]", 422, "body"),
    ("unknown type", {"feedback_type": "explicit_like", "value": True}, 422, "feedback_type"),
    ("rating 6", {"feedback_type": "explicit_rating", "value": 6}, 422, "value"),
    ("rating 4.5", {"feedback_type": "explicit_rating", "value": 4.5}, 422, "value"),
    ("thumbs false", {"feedback_type": "explicit_thumbs_up", "value": False}, 422, "value"),
    ("empty comment", {"feedback_type": "explicit_text_comment", "value": ""}, 422, "value"),
    ("long comment", {"feedback_type": "explicit_text_comment", "value": "x" * 10_001}, 422, "value"),
    ("big metadata", {"feedback_type": "implicit_usage", "value": True, "metadata": {"k": "v" * 5000}}, 422, "metadata"),
    ("future timestamp", {"feedback_type": "implicit_usage", "value": True,
                          "timestamp": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()}, 422, "timestamp"),
    ("unknown field", {"feedback_type": "implicit_usage", "value": True, "project": "someone-else"}, 422, "project"),
    ("bad event_id", {"feedback_type": "implicit_usage", "value": True, "event_id": "a b"}, 422, "event_id"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    http: Api, table: FeedbackTable, project: str, case: str, body: object, status: int, field: str
) -> None:
    request_id = rid()
    if isinstance(body, dict):
        response = http.post("/v1/feedback", {"request_id": request_id, **body})
    else:
        response = http.post("/v1/feedback", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert field in [f["field"] for f in error["fields"]]
    assert field in error["message"]
    assert stored_events(table, project, request_id) == []


def test_oversized_bodies_are_refused(http: Api, table: FeedbackTable, project: str) -> None:
    request_id = rid()
    over_function_limit = {"request_id": request_id, "feedback_type": "implicit_usage", "value": True,
                           "metadata": {"pad": "x" * 5_100_000}}
    response = http.post("/v1/feedback", over_function_limit)
    assert response.status_code == 413
    assert response.json()["error"]["fields"][0]["field"] == "body"
    over_gateway_limit = http.post("/v1/feedback", data="x" * (7 * 1024 * 1024),
                                   headers={"Content-Type": "application/json"})
    assert over_gateway_limit.status_code == 413
    assert stored_events(table, project, request_id) == []


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer flk_0123456789abcdef_" + "A" * 43},  # well formed, unknown
    {"x-api-key": "not-a-key"},
], ids=["missing", "empty bearer", "basic", "unknown key", "malformed x-api-key"])
def test_requests_without_a_valid_key_are_refused_before_the_body_is_read(
    stack, table: FeedbackTable, project: str, headers: dict[str, str]
) -> None:
    request_id = rid()
    anonymous = Api(stack.api_url, None)
    response = anonymous.post("/v1/feedback", {"request_id": request_id, "feedback_type": "explicit_rating",
                                               "value": 9}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # the template's gateway response: browsers read it
    assert response.json()["error"]["fields"][0]["field"] == "authorization"
    assert anonymous.get(f"/v1/requests/{request_id}/feedback", headers=headers).status_code == 401
    assert anonymous.get("/v1/health").status_code == 200


def test_x_api_key_header_and_revocation(stack, table: FeedbackTable, project: str) -> None:
    issued = create_key(table, project)
    body = {"request_id": rid(), "feedback_type": "implicit_discard", "value": True}
    plain = Api(stack.api_url, None)
    assert plain.post("/v1/feedback", body, headers={"x-api-key": issued.plaintext}).status_code == 201
    revoke_key(table, issued.key.key_id)
    refused = plain.post("/v1/feedback", body, headers={"x-api-key": issued.plaintext})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]


def test_two_different_keys_in_one_request_are_refused(stack, table: FeedbackTable, project: str) -> None:
    mine, theirs = create_key(table, project).plaintext, create_key(table, "someone-else").plaintext
    body = {"request_id": rid(), "feedback_type": "implicit_discard", "value": True}
    plain = Api(stack.api_url, None)
    both = plain.post("/v1/feedback", body, headers={"x-api-key": mine, "Authorization": f"Bearer {theirs}"})
    assert both.status_code == 401 and "two different API keys" in both.json()["error"]["message"]
    same = plain.post("/v1/feedback", body, headers={"x-api-key": mine, "Authorization": f"Bearer {mine}"})
    assert same.status_code == 201


def test_a_key_never_reaches_another_projects_data(stack, table: FeedbackTable) -> None:
    key_a, key_b = create_key(table, "tenant-a").plaintext, create_key(table, "tenant-b").plaintext
    tenant_a, tenant_b = Api(stack.api_url, key_a), Api(stack.api_url, key_b)
    request_id = rid()
    assert tenant_a.post("/v1/feedback", {"request_id": request_id, "feedback_type": "explicit_thumbs_down",
                                          "value": True, "event_id": "shared-id"}).status_code == 201
    assert tenant_a.post("/v1/changes", {"name": f"c-{request_id}",
                                         "effective_at": "2026-05-01T00:00:00Z"}).status_code == 201
    # B sees nothing of A's, and writing the same request_id and event_id creates B's own event.
    assert tenant_b.get(f"/v1/requests/{request_id}/feedback").json()["events"] == 0
    assert f"c-{request_id}" not in [c["name"] for c in tenant_b.get("/v1/changes").json()["changes"]]
    assert tenant_b.get(f"/v1/changes/c-{request_id}").status_code == 404
    b_write = tenant_b.post("/v1/feedback", {"request_id": request_id, "feedback_type": "explicit_thumbs_up",
                                             "value": True, "event_id": "shared-id"})
    assert b_write.status_code == 201
    a_view = tenant_a.get(f"/v1/requests/{request_id}/feedback").json()
    assert (a_view["thumbs_down"], a_view["thumbs_up"]) == (1, 0)
    # The separator of the key design in a request_id stays inside B's own partition key.
    crafted = tenant_b.post("/v1/feedback", {"request_id": f"x#FB#tenant-a#{request_id}",
                                             "feedback_type": "explicit_thumbs_up", "value": True})
    assert crafted.status_code == 201
    assert tenant_a.get(f"/v1/requests/{request_id}/feedback").json() == a_view


@pytest.mark.parametrize("request_id", [
    "chatcmpl-9xYz_01", "msg_01ABC", "550e8400-e29b-41d4-a716-446655440000", "conv:42@eu;turn=3",
    "a b", "[x]{y}|^<z>", "(o)!*'~,+&$=", "naïve-日本", "a#b?c", 'q"uote`\\', "e\u0301²👍", ".hidden", "...x",
])
def test_every_accepted_request_id_can_be_summarised(http: Api, request_id: str) -> None:
    from urllib.parse import quote

    assert http.post("/v1/feedback", {"request_id": request_id, "feedback_type": "explicit_rating",
                                      "value": 3}).status_code == 201
    summary = http.get(f"/v1/requests/{quote(request_id, safe='')}/feedback")
    assert summary.status_code == 200, summary.text
    assert summary.json()["request_id"] == request_id and summary.json()["ratings"] == 1


@pytest.mark.parametrize("request_id", ["a/b", "100%", "tab\there", "nul\x00", "del\x7f", ".", ".."])
def test_request_ids_that_a_path_cannot_carry_are_refused(http: Api, request_id: str) -> None:
    response = http.post("/v1/feedback", {"request_id": request_id, "feedback_type": "implicit_usage", "value": True})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "request_id"


def test_batch_stores_the_valid_items_and_reports_each(http: Api, table: FeedbackTable, project: str) -> None:
    request_id = rid()
    assert http.post("/v1/feedback", {"request_id": request_id, "feedback_type": "explicit_rating",
                                      "value": 5, "event_id": "pre-existing"}).status_code == 201
    events = [
        {"request_id": request_id, "feedback_type": "explicit_thumbs_up", "value": True, "event_id": "b1"},
        {"request_id": request_id, "feedback_type": "explicit_rating", "value": 6, "event_id": "b2"},
        {"request_id": request_id, "feedback_type": "explicit_rating", "value": 5, "event_id": "pre-existing"},
        {"request_id": request_id, "feedback_type": "explicit_rating", "value": 2, "event_id": "pre-existing"},
        {"request_id": request_id, "feedback_type": "implicit_edit", "value": "better text", "event_id": "b3"},
        {"request_id": request_id, "feedback_type": "implicit_edit", "value": "better text", "event_id": "b3"},
        {"request_id": request_id, "feedback_type": "nonsense", "value": True},
        {"request_id": request_id, "feedback_type": "implicit_usage", "value": True},
    ]
    response = http.post("/v1/feedback/batch", {"events": events})
    assert response.status_code == 207
    result = response.json()
    statuses = [r["status"] for r in result["results"]]
    assert statuses == [201, 422, 200, 409, 201, 200, 422, 201]
    assert [r["index"] for r in result["results"]] == list(range(len(events)))
    assert (result["stored"], result["duplicates"], result["rejected"]) == (3, 2, 3)
    assert result["results"][1]["errors"][0]["field"] == "value"
    assert result["results"][6]["errors"][0]["field"] == "feedback_type"
    stored = stored_events(table, project, request_id)
    assert sorted(i["event_id"] for i in stored if i["event_id"] != result["results"][7]["event_id"]) == \
        ["b1", "b3", "pre-existing"]
    assert len(stored) == 4
    assert next(i for i in stored if i["event_id"] == "pre-existing")["value"] == 5


def test_batch_limits(http: Api) -> None:
    event = {"request_id": rid(), "feedback_type": "implicit_usage", "value": True}
    too_many = http.post("/v1/feedback/batch", {"events": [event] * 501})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["fields"][0]["field"] == "events"
    assert http.post("/v1/feedback/batch", {"events": []}).status_code == 422
    assert http.post("/v1/feedback/batch", {"items": [event]}).status_code == 422
    full = http.post("/v1/feedback/batch", {"events": [{**event, "event_id": f"e{i}"} for i in range(500)]})
    assert full.status_code == 207 and full.json()["stored"] == 500


def test_summary_of_a_request(http: Api) -> None:
    request_id = rid()
    events = [
        {"feedback_type": "explicit_thumbs_up", "value": True, "user_id": "a", "timestamp": "2026-05-15T10:00:00Z"},
        {"feedback_type": "explicit_thumbs_down", "value": True, "user_id": "a", "timestamp": "2026-05-15T10:05:00Z"},
        {"feedback_type": "explicit_rating", "value": 4, "user_id": "b", "timestamp": "2026-05-15T10:01:00Z"},
        {"feedback_type": "explicit_rating", "value": 2, "user_id": "c", "timestamp": "2026-05-15T10:02:00Z"},
        {"feedback_type": "explicit_text_comment", "value": "<b>wrong</b> units", "user_id": "c",
         "timestamp": "2026-05-15T10:03:00Z"},
        {"feedback_type": "implicit_usage", "value": True, "user_id": "a", "timestamp": "2026-05-15T10:00:30Z"},
        {"feedback_type": "implicit_edit", "value": "fixed", "user_id": "b", "timestamp": "2026-05-15T10:04:00Z"},
        {"feedback_type": "implicit_discard", "value": True, "user_id": "c", "timestamp": "2026-05-15T10:04:30Z"},
    ]
    result = http.post("/v1/feedback/batch", {"events": [{"request_id": request_id, **e} for e in events]}).json()
    assert result["stored"] == len(events)
    summary = http.get(f"/v1/requests/{request_id}/feedback").json()
    assert summary["events"] == 8
    assert summary["counts"]["explicit_rating"] == 2 and summary["counts"]["implicit_edit"] == 1
    assert (summary["thumbs_up"], summary["thumbs_down"], summary["ratings"]) == (1, 1, 2)
    assert summary["mean_rating"] == 3.0
    assert summary["comments"] == [{"text": "<b>wrong</b> units", "user_id": "c", "timestamp": "2026-05-15T10:03:00Z"}]
    assert summary["implicit"] == {"used": 1, "edited": 1, "discarded": 1, "edits": ["fixed"], "score": 0.5,
                                   "score_n": 2}
    # a: latest is thumbs down (0), b: rating 4 (0.75), c: rating 2 (0.25)
    assert summary["human"]["n_users"] == 3
    assert summary["human"]["score"] == pytest.approx((0 + 0.75 + 0.25) / 3)
    assert summary["human"]["label"] == "neutral"
    assert (summary["first_at"], summary["last_at"]) == ("2026-05-15T10:00:00Z", "2026-05-15T10:05:00Z")


def test_summary_of_a_request_without_feedback(http: Api) -> None:
    summary = http.get(f"/v1/requests/{rid()}/feedback").json()
    assert summary["events"] == 0 and summary["human"] == {"score": None, "label": None, "n_users": 0}


def test_changes_registry(http: Api) -> None:
    change = {"name": "prompt-v8", "description": "shorter system prompt", "effective_at": "2026-05-10T00:00:00+02:00",
              "segment": {"metadata.query_type": "code"}}
    created = http.post("/v1/changes", change)
    assert created.status_code == 201
    assert created.json()["effective_at"] == "2026-05-09T22:00:00Z"
    assert http.post("/v1/changes", change).status_code == 409
    ab = {"name": "ab-model", "effective_at": "2026-05-01T00:00:00Z", "variant_field": "model_arm",
          "control": "m-old", "treatment": "m-new"}
    assert http.post("/v1/changes", ab).status_code == 201
    half_ab = http.post("/v1/changes", {"name": "ab-bad", "effective_at": "2026-05-01T00:00:00Z", "control": "x"})
    assert half_ab.status_code == 422
    missing_date = http.post("/v1/changes", {"name": "no-date"})
    assert missing_date.status_code == 422
    assert missing_date.json()["error"]["fields"][0]["field"] == "effective_at"
    listed = http.get("/v1/changes").json()["changes"]
    assert [c["name"] for c in listed] == ["ab-model", "prompt-v8"]  # by effective_at
    assert http.get("/v1/changes/prompt-v8").json()["segment"] == {"metadata.query_type": "code"}
    assert http.get("/v1/changes/nope").status_code == 404


def test_health_openapi_and_unknown_routes(stack) -> None:
    anonymous = Api(stack.api_url, None)
    assert anonymous.get("/v1/health").json()["status"] == "ok"
    document = anonymous.get("/v1/openapi.json").json()
    assert "/v1/feedback/batch" in document["paths"]
    assert anonymous.get("/v1/unknown").status_code == 403  # as API Gateway answers an undeclared route
    assert anonymous.post("/v1/health", {}).status_code == 403


def test_windowed_read_uses_the_day_index_and_never_scans(http: Api, table: FeedbackTable, project: str) -> None:
    request_ids = [rid() for _ in range(3)]
    stamps = ["2026-03-01T23:59:59Z", "2026-03-02T12:00:00Z", "2026-03-04T00:00:00Z"]
    batch = [{"request_id": r, "feedback_type": "implicit_usage", "value": True, "timestamp": t, "event_id": f"w{i}"}
             for i, (r, t) in enumerate(zip(request_ids, stamps))]
    assert http.post("/v1/feedback/batch", {"events": batch}).json()["stored"] == 3
    calls: list[str] = []
    table.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    try:
        window = list(table.feedback_in_window(project, datetime(2026, 3, 1, 12, tzinfo=timezone.utc),
                                               datetime(2026, 3, 3, 23, tzinfo=timezone.utc), shards=8))
    finally:
        table.client.meta.events.unregister("before-call.dynamodb.*")
    assert sorted(i["event_id"] for i in window) == ["w0", "w1"]
    assert set(calls) == {"Query"}
    assert len(calls) == 3 * 8  # one Query per day and shard


def test_retention_sets_a_ttl_on_feedback_items(http: Api, table: FeedbackTable, project: str) -> None:
    request_id = rid()
    http.post("/v1/feedback", {"request_id": request_id, "feedback_type": "implicit_usage", "value": True})
    [item] = stored_events(table, project, request_id)
    days = (int(item["expires_at"]) - datetime.now(timezone.utc).timestamp()) / 86400
    assert 729 < days <= 730


def test_unicode_survives_the_round_trip(http: Api) -> None:
    request_id = f"req-ünï-{uuid.uuid4().hex[:6]}-日本"
    comment = "Très bien 👍 — 正しい"
    assert http.post("/v1/feedback", {"request_id": request_id, "feedback_type": "explicit_text_comment",
                                      "value": comment}).status_code == 201
    summary = http.get(f"/v1/requests/{request_id}/feedback").json()
    assert summary["request_id"] == request_id
    assert summary["comments"][0]["text"] == comment
    assert json.dumps(summary)  # plain JSON


def test_the_docs_page_and_the_document_are_served_without_a_key(stack) -> None:
    document = requests.get(f"{stack.api_url}/v1/openapi.json", timeout=30)
    assert document.status_code == 200 and document.json()["info"]["title"] == "feedback-loop API"
    page = requests.get(f"{stack.api_url}/v1/docs", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text and '"/v1/feedback"' in page.text  # the UI, inline, with the document
    as_json = requests.get(f"{stack.api_url}/v1/docs", params={"format": "json"}, timeout=30)
    assert as_json.json() == document.json()


def test_a_keys_scopes_are_enforced_route_by_route(stack, table: FeedbackTable, project: str) -> None:
    from feedback_loop.logic.keys import ROUTE_SCOPES, SCOPES

    browser = Api(stack.api_url, create_key(table, project, label="website", scopes=["feedback:write"]).plaintext)
    reader = Api(stack.api_url, create_key(table, project, scopes=["feedback:read", "changes:read"]).plaintext)
    request_id = rid()
    feedback = {"request_id": request_id, "feedback_type": "explicit_thumbs_up", "value": True}
    assert browser.post("/v1/feedback", feedback).status_code == 201
    assert browser.post("/v1/feedback/batch", {"events": [feedback]}).status_code == 207
    refused = {
        "feedback:read": browser.get(f"/v1/requests/{request_id}/feedback"),
        "evals:write": browser.post("/v1/evals", {"records": [{"request_id": request_id}]}),
        "changes:write": browser.post("/v1/changes", {"name": "c-scope", "effective_at": "2026-05-01T00:00:00Z"}),
        "changes:read": browser.get("/v1/changes"),
        "retrain": browser.post("/v1/retrain", {}),
    }
    for scope, answer in refused.items():
        assert answer.status_code == 403, (scope, answer.text)
        error = answer.json()["error"]
        assert error["fields"] == [{"field": "authorization", "message": f"needs the scope {scope}"}]
        assert SCOPES[scope] in error["message"] and "its scopes: feedback:write" in error["message"]
    otlp = requests.post(f"{stack.api_url}/v1/traces", data=b"{}", timeout=30, headers={
        **browser.headers, "Content-Type": "application/json"})
    assert otlp.status_code == 403
    # the other way round: a reading key writes nothing
    assert reader.get(f"/v1/requests/{request_id}/feedback").json()["events"] == 2
    assert reader.get("/v1/changes").status_code == 200
    assert reader.post("/v1/feedback", feedback).status_code == 403
    assert {scope for scope in ROUTE_SCOPES.values()} == set(SCOPES)  # every scope guards a route


def test_a_key_cannot_be_made_with_an_unknown_scope(table: FeedbackTable, project: str) -> None:
    with pytest.raises(ValueError, match="scopes must be some of"):
        create_key(table, project, scopes=["feedback:delete"])
    with pytest.raises(ValueError, match="scopes must be some of"):
        create_key(table, project, scopes=[])


def test_serves_key_replaces_the_one_it_printed_before(table: FeedbackTable, project: str) -> None:
    from feedback_loop.logic.keys import list_keys, replace_key

    kept = create_key(table, project, label="my app")
    first, revoked = replace_key(table, project, "feedback-loop serve")
    assert revoked == []
    second, revoked = replace_key(table, project, "feedback-loop serve")
    assert [k.key_id for k in revoked] == [first.key.key_id]
    live = {k.key_id for k in list_keys(table, project) if k.revoked_at is None}
    assert live == {kept.key.key_id, second.key.key_id}
