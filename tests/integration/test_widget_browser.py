"""The feedback widget in headless Chromium: clicks and signals reach the table through the HTTP API,
from the local stack's example page and from another origin (CORS), and hostile text stays text."""

from __future__ import annotations

import threading

import pytest
import requests

from feedback_loop.dal.store import FeedbackTable

pytestmark = pytest.mark.integration
PAYLOAD = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>'
OTHER_ORIGIN = "https://shop.example.test"



def stored(table: FeedbackTable, project: str, request_id: str) -> list[dict]:
    from feedback_loop.dal import items

    return list(table.query_partition(items.request_pk(project, request_id)))


def wait_for_sent(page, count: int) -> list[dict]:
    page.wait_for_function(f"() => window.feedbackWidget && window.feedbackWidget.sent.length >= {count}",
                           timeout=15_000)
    return page.evaluate("() => window.feedbackWidget.sent")


def test_clicks_and_signals_arrive_in_the_table(stack, table, project, api_key, browser) -> None:
    page = browser.new_page()
    page.goto(f"{stack.api_url}/widget/#key={api_key}&request=w-1")
    page.click("[data-fl=up]")
    assert wait_for_sent(page, 1)[0]["status"] == 201
    assert page.is_disabled("[data-fl=up]") and page.is_disabled("[data-fl=down]")  # one vote per answer
    page.fill("[data-fl=comment]", PAYLOAD)
    page.click("[data-fl=send]")
    wait_for_sent(page, 2)
    page.dispatch_event("#answer", "copy")
    wait_for_sent(page, 3)
    page.click("#answer")
    page.keyboard.press("Control+End")
    page.keyboard.type(" Then wait for the key cache to expire.")
    page.click("h1")  # the answer loses focus: the edit is sent
    wait_for_sent(page, 4)
    page.click("[data-fl=discard]")
    sent = wait_for_sent(page, 5)
    assert [s["status"] for s in sent] == [201] * 5
    assert "Thanks" in page.text_content("[data-fl=status]")

    items = stored(table, project, "w-1")
    by_type = {item["feedback_type"]: item for item in items}
    assert sorted(by_type) == ["explicit_text_comment", "explicit_thumbs_up", "implicit_discard", "implicit_edit",
                               "implicit_usage"]
    assert len(items) == 5
    assert {item["event_id"] for item in items} == {s["event_id"] for s in sent}
    assert by_type["explicit_text_comment"]["value"] == PAYLOAD  # stored as data
    assert by_type["implicit_edit"]["value"].endswith("Then wait for the key cache to expire.")
    assert by_type["explicit_thumbs_up"]["user_cohort"] == "pro"

    # the page shows the summary, comment included, as text
    page.click("#refresh")
    page.wait_for_function("() => document.getElementById('summary').textContent.includes('explicit_text_comment')")
    assert page.evaluate("() => window.__xss") is None
    assert page.evaluate("() => document.querySelectorAll('img[src=x], #summary script').length") == 0
    page.close()


@pytest.fixture
def other_site(stack):
    """Another origin (another port on loopback) that hosts the page and the script itself."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    pages: dict[str, tuple[str, str]] = {
        "/static/feedback-loop.js": ("text/javascript", requests.get(f"{stack.api_url}/widget/feedback-loop.js",
                                                                     timeout=10).text)}

    @Request.application
    def serve(request: Request) -> Response:
        kind, body = pages.get(request.path, ("text/plain", "not found"))
        return Response(body, content_type=kind, status=200 if request.path in pages else 404)

    server = make_server("127.0.0.1", 0, serve, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", pages
    server.shutdown()


def test_the_widget_works_from_another_origin(stack, table, project, api_key, browser, other_site) -> None:
    """A site on another origin: the browser preflights, the API allows it, the thumb is stored."""
    origin, pages = other_site
    pages["/product"] = ("text/html", f"""<!doctype html><div id="answer">An answer</div><div id="fb"></div>
    <script src="/static/feedback-loop.js"></script>
    <script>window.feedbackWidget = FeedbackLoop.mount(document.getElementById("fb"),
      {{apiUrl: "{stack.api_url}", apiKey: "{api_key}", requestId: "cross-1"}});</script>""")
    page = browser.new_page()
    page.goto(f"{origin}/product")
    page.click("[data-fl=down]")
    [sent] = wait_for_sent(page, 1)
    assert sent["status"] == 201  # the page could read the answer: CORS allowed it (after a preflight)
    [item] = stored(table, project, "cross-1")
    assert item["feedback_type"] == "explicit_thumbs_down"
    page.close()


def test_a_revoked_or_wrong_key_is_reported_not_retried_forever(stack, browser) -> None:
    page = browser.new_page()
    page.goto(f"{stack.api_url}/widget/#key=flk_not_a_key&request=w-2")
    page.click("[data-fl=up]")
    [sent] = wait_for_sent(page, 1)
    assert sent["status"] == 401
    assert "Could not send feedback (401)" in page.text_content("[data-fl=status]")
    page.close()


def test_preflight_and_refusals_carry_cors_headers(stack) -> None:
    preflight = requests.options(f"{stack.api_url}/v1/feedback", timeout=10, headers={
        "Origin": OTHER_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", OTHER_ORIGIN)  # CorsAllowOrigin is *
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    refused = requests.post(f"{stack.api_url}/v1/feedback", json={}, timeout=10, headers={"Origin": OTHER_ORIGIN})
    assert refused.status_code == 401
    # refused by the authorizer: API Gateway's ACCESS_DENIED response carries CorsAllowOrigin (*), so the widget can read why
    assert refused.headers["Access-Control-Allow-Origin"] == "*"


def test_the_gateway_serves_only_the_widget_files(stack) -> None:
    assert requests.get(f"{stack.api_url}/widget/feedback-loop.js", timeout=10).headers["Content-Type"].startswith(
        "text/javascript")
    for name in ("..%2Fdemo%2Frun.py", "../../template.yaml", "nothing.js"):
        assert requests.get(f"{stack.api_url}/widget/{name}", timeout=10).status_code in (403, 404)
