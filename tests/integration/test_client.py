"""The Python client end to end, including retries through a fault-injecting proxy on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from feedback_loop.client import FeedbackApiError, FeedbackClient
from feedback_loop.dal import items as keys
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.models.feedback import FeedbackType

pytestmark = pytest.mark.integration


class FaultyProxy:
    """Forwards to the API; the next `faults` requests fail in the given way first.

    "lose": the request reaches the API and is stored, but the client gets a 502 (a lost response).
    "busy": the proxy answers 503 with Retry-After without forwarding.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.faults: list[str] = []
        self.forwarded = 0
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __call__(self, environ, start_response):
        request = Request(environ)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "busy":
            response = Response('{"message": "busy"}', status=503, headers={"Retry-After": "0"})
            return response(environ, start_response)
        upstream = requests.request(request.method, self.upstream + request.full_path.rstrip("?"),
                                    data=request.get_data(), headers={k: v for k, v in request.headers if k != "Host"})
        self.forwarded += 1
        if fault == "lose":
            return Response("bad gateway", status=502)(environ, start_response)
        response = Response(upstream.content, status=upstream.status_code,
                            content_type=upstream.headers.get("Content-Type"))
        return response(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def proxy(stack) -> Iterator[FaultyProxy]:
    running = FaultyProxy(stack.api_url)
    yield running
    running.close()


def test_every_client_method_stores_its_type(client: FeedbackClient) -> None:
    request_id = "client-all-types"
    sent = [
        client.thumbs_up(request_id, user_id="a"),
        client.thumbs_down(request_id, user_id="b"),
        client.rate(request_id, 5, user_id="c", user_cohort="pro"),
        client.comment(request_id, "great", user_id="c"),
        client.used(request_id, metadata={"surface": "editor"}),
        client.edited(request_id, "edited text"),
        client.discarded(request_id, timestamp=datetime(2026, 1, 2, tzinfo=timezone.utc)),
    ]
    assert [e.feedback_type for e in sent] == list(FeedbackType)
    assert len({e.event_id for e in sent}) == 7
    summary = client.summary(request_id)
    assert summary.events == 7 and summary.human.n_users == 3
    assert summary.human.score == pytest.approx((1 + 0 + 1) / 3)
    assert summary.comments[0].text == "great"


def test_a_lost_response_is_retried_and_stored_once(
    proxy: FaultyProxy, api_key: str, table: FeedbackTable, project: str
) -> None:
    client = FeedbackClient(proxy.url, api_key, retries=3, backoff_factor=0.01)
    proxy.faults = ["lose", "busy"]
    event = client.rate("client-lost", 4, user_id="u")
    assert proxy.forwarded == 2  # stored on the first attempt, answered with the original on the last
    stored = list(table.query_partition(keys.request_pk(project, "client-lost")))
    assert [i["event_id"] for i in stored] == [event.event_id]


def test_batch_retries_are_stored_once(proxy: FaultyProxy, api_key: str, table: FeedbackTable, project: str) -> None:
    client = FeedbackClient(proxy.url, api_key, retries=3, backoff_factor=0.01)
    proxy.faults = ["lose"]
    events = [client.event(f"client-batch-{i}", "explicit_rating", 1 + i % 5) for i in range(30)]
    result = client.send_batch(events)
    # The first attempt stored everything; the retry finds each event already there.
    assert (result.stored, result.duplicates, result.rejected) == (0, 30, 0)
    for i in range(30):
        assert len(list(table.query_partition(keys.request_pk(project, f"client-batch-{i}")))) == 1


def test_client_gives_up_after_its_retries(proxy: FaultyProxy, api_key: str) -> None:
    client = FeedbackClient(proxy.url, api_key, retries=2, backoff_factor=0.01)
    proxy.faults = ["busy"] * 3
    with pytest.raises(FeedbackApiError) as caught:
        client.health()
    assert caught.value.status == 503


def test_client_reports_the_refused_field(client: FeedbackClient) -> None:
    with pytest.raises(FeedbackApiError) as caught:
        client.rate("client-bad", 0)
    assert caught.value.status == 422
    assert caught.value.fields[0]["field"] == "value"


def test_batch_results_keep_their_positions(client: FeedbackClient) -> None:
    events = [client.event("client-pos", "explicit_rating", r) for r in (1, 9, 3)]
    result = client.send_batch(events)
    assert [r.status for r in result.results] == [201, 422, 201]
    assert [r.event_id for r in result.results if r.status == 201] == [events[0]["event_id"], events[2]["event_id"]]


def test_register_change_is_safe_to_retry(client: FeedbackClient) -> None:
    first = client.register_change("client-change", "2026-05-01T00:00:00Z", segment={"query_type": "code"})
    again = client.register_change("client-change", "2026-05-01T00:00:00Z", segment={"query_type": "code"})
    assert again == first
    with pytest.raises(FeedbackApiError) as caught:
        client.register_change("client-change", "2026-06-01T00:00:00Z")
    assert caught.value.status == 409
    assert [c.name for c in client.list_changes()] == ["client-change"]
