"""A local API Gateway: HTTP requests in, REST API proxy events to the template's functions, responses out.

It answers the way API Gateway does where the function is not involved: 403 "Missing Authentication
Token" for a route the template does not declare, 413 over the payload limit, 502 when the function
raises, and the Lambda authorizer's refusals (local/authorizer.py), each shaped by the template's
GatewayResponses.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from feedback_loop.local.authorizer import API_ID, GatewayResponse, authorize, render
from feedback_loop.local.endpoints import LocalEndpointRuntime
from feedback_loop.local.runtime import LocalFunction
from feedback_loop.local.template import ACCOUNT_ID, Route

READ_TIMEOUT_SECONDS = 30

log = logging.getLogger("feedback_loop.local.gateway")

LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # Lambda's synchronous request limit, below API Gateway's 10 MB
_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


def _werkzeug_rule(path: str) -> str:
    return _PARAMETER.sub(lambda m: f"<path:{m.group(1)}>" if m.group(2) else f"<{m.group(1)}>", path)


def _json_response(status: int, message: str) -> Response:
    return Response(f'{{"message": "{message}"}}', status=status, content_type="application/json")


def _utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


WIDGET = Path(__file__).resolve().parents[1] / "widget"
_WIDGET_TYPES = {".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8"}


def _widget_file(name: str) -> Response:
    path = WIDGET / name
    if path.parent != WIDGET or path.suffix not in _WIDGET_TYPES or not path.is_file():
        return _json_response(404, "Not Found")
    return Response(path.read_bytes(), content_type=_WIDGET_TYPES[path.suffix],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


class _TimedRequestHandler(WSGIRequestHandler):
    """A connection that sends nothing for READ_TIMEOUT_SECONDS is closed (API Gateway's own limit on a
    request is 30 s): a client that half-sends requests cannot hold the gateway's threads."""

    timeout = READ_TIMEOUT_SECONDS


class LocalGateway:
    def __init__(self, routes: Iterable[Route], functions: dict[str, LocalFunction], stage: str = "prod",
                 runtime: LocalEndpointRuntime | None = None, responses: dict[str, GatewayResponse] | None = None,
                 binary_media_types: Iterable[str] | None = None):
        self.functions = functions
        # the Api's BinaryMediaTypes (SAM writes '/' as '~1'): bodies of these types reach the
        # function base64-encoded whatever their bytes, as API Gateway passes them
        self.binary_types = {t.replace("~1", "/").lower() for t in binary_media_types or []}
        self.responses = responses or {}
        self.stage = stage
        self.runtime = runtime
        routes = list(routes)
        rules = [Rule(_werkzeug_rule(r.path), methods=[r.method], endpoint=r) for r in routes]
        # CORS preflights (the template's Api Cors): answered by the path's function, which knows the policy
        first_by_path = {r.path: r for r in reversed(routes)}
        rules += [Rule(_werkzeug_rule(path), methods=["OPTIONS"], endpoint=route) for path, route in first_by_path.items()]
        if runtime is not None:  # SageMaker runtime's own path, for boto3's sagemaker-runtime client
            rules.append(Rule("/endpoints/<name>/invocations", methods=["POST"], endpoint="invocations"))
        # the browser widget and its example page (local only: in AWS, your site serves the script)
        rules.append(Rule("/widget/", methods=["GET"], endpoint="widget", defaults={"name": "index.html"},
                          strict_slashes=False))
        rules.append(Rule("/widget/<name>", methods=["GET"], endpoint="widget"))
        # paths as API Gateway matches them: `/v1//changes` and `/v1/feedback/` are other paths (403,
        # Missing Authentication Token), not redirects to the route
        self.url_map = Map(rules, strict_slashes=True, merge_slashes=False)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- translation ----------------------------------------------------------------------------

    def proxy_event(self, request: Request, route: Route, path_parameters: dict[str, str], body: bytes) -> dict:
        media = (request.content_type or "").split(";")[0].strip().lower()
        binary = media in self.binary_types or f"{media.partition('/')[0]}/*" in self.binary_types
        text = None if binary else _utf8(body)
        encoded = text is None  # binary, or bytes that are not text: base64
        if encoded:
            text = base64.b64encode(body).decode()
        headers = {k: v for k, v in request.headers.items()}
        return {
            "resource": route.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": headers,
            "multiValueHeaders": {k: request.headers.getlist(k) for k in headers},
            "queryStringParameters": dict(request.args.items()) or None,
            "multiValueQueryStringParameters": {k: request.args.getlist(k) for k in request.args} or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.path,
                "httpMethod": request.method,
                "path": f"/{self.stage}{request.path}",
                "stage": self.stage,
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "domainName": request.host,
                "identity": {"sourceIp": request.remote_addr, "userAgent": request.user_agent.string},
            },
            "body": text if body else None,
            "isBase64Encoded": encoded,
        }

    @staticmethod
    def http_response(result: dict) -> Response:
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        response = Response(payload, status=int(result.get("statusCode", 200)))
        response.headers.clear()
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response.headers.remove(name)
            for value in values:
                response.headers.add(name, str(value))
        return response

    # --- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self.handle(request)(environ, start_response)

    def gateway_response(self, kind: str, context: dict | None = None) -> Response:
        status, headers, body = render(kind, self.responses, {"authorizer": context or {}})
        response = Response(body, status=status, content_type="application/json")
        response.headers.update(headers)
        return response

    def handle(self, request: Request) -> Response:
        try:
            route, path_parameters = self.url_map.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed, RequestRedirect):
            return self.gateway_response("MISSING_AUTHENTICATION_TOKEN")
        if route == "widget":
            return _widget_file(path_parameters["name"])
        if route == "invocations":
            status, body = self.runtime.invoke(path_parameters["name"], request.get_data(),
                                               request.content_type or "", request.headers.get("Accept", ""))
            return Response(body, status=status, content_type="application/json")
        if (request.content_length or 0) > LAMBDA_PAYLOAD_LIMIT:
            return self.gateway_response("REQUEST_TOO_LARGE")
        body = request.stream.read(LAMBDA_PAYLOAD_LIMIT + 1)
        if len(body) > LAMBDA_PAYLOAD_LIMIT:
            return self.gateway_response("REQUEST_TOO_LARGE")
        event = self.proxy_event(request, route, path_parameters, body)
        if route.authorizer is not None and request.method != "OPTIONS":  # preflights carry no key
            decision = authorize(self.functions[route.authorizer].invoke, event)
            if decision.outcome != "ALLOW":
                return self.gateway_response(decision.outcome, decision.context)
        try:
            result = self.functions[route.function].invoke(event)
        except Exception:
            log.exception("function %s failed on %s %s", route.function, request.method, request.path)
            return self.gateway_response("BAD_GATEWAY")
        if not isinstance(result, dict) or "statusCode" not in result:
            log.error("function %s returned a malformed proxy response", route.function)
            return self.gateway_response("BAD_GATEWAY")
        return self.http_response(result)

    # --- serving ---------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = make_server(host, port, self, threaded=True, request_handler=_TimedRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-gateway", daemon=True)
        self._thread.start()
        return f"http://{host}:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
