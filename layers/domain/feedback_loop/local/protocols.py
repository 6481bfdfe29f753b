"""The AWS APIs the local stack answers itself (Athena, Firehose, Lambda's Invoke), read in each protocol
that botocore may speak for them.

A botocore client speaks the protocol its service model names: the JSON protocol (`POST /` with
`X-Amz-Target: <prefix>.<Operation>` and the input as the body) or REST-JSON (the method and path name
the operation, as the model's `http.requestUri` says, the input split between the path, the query,
headers and the body). botocore 1.44.18 moved Athena from the first to the second. So the routes come
from the installed botocore's own models, never hand-written, and `X-Amz-Target` is honoured whatever
the model says (an older client, or moto's Step Functions interpreter with another botocore).
The service is the one the request is signed for (SigV4's credential scope).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import botocore.session
from botocore.model import OperationModel, Shape

_SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/")
_LABEL = re.compile(r"\{([^}+]+)(\+?)\}")
# (status, headers, content) of an answer
Answer = tuple[str, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class Call:
    """One request to a locally answered API: its operation and its input as the model names its members."""

    service: str
    operation: str
    params: dict[str, Any]
    rest: bool  # read as REST-JSON (answered so), else the JSON protocol


def signed_for(environ: dict[str, Any]) -> tuple[str, str] | None:
    """(region, service) of the request's SigV4 credential scope."""
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return (found.group(1), found.group(2)) if found else None


@cache
def _service_model(name: str) -> Any:
    return botocore.session.get_session().get_service_model(name)


@dataclass(frozen=True)
class _Route:
    method: str
    path: re.Pattern[str]
    labels: tuple[str, ...]  # the path's labels, in order
    query: tuple[str, ...]  # keys the requestUri fixes in the query (`/x?tagging`)
    operation: OperationModel
    literal: int  # how many characters of the path are not labels


def _route(operation: OperationModel) -> _Route:
    path, _, query = operation.http["requestUri"].partition("?")
    labels, pattern, start = [], "", 0
    for label in _LABEL.finditer(path):
        pattern += re.escape(path[start:label.start()]) + ("(.+)" if label.group(2) else "([^/]+)")
        labels.append(label.group(1))
        start = label.end()
    pattern += re.escape(path[start:])
    fixed = tuple(key.partition("=")[0] for key in query.split("&") if key)
    return _Route(operation.http.get("method", "POST"), re.compile(f"^{pattern}/?$"), tuple(labels), fixed, operation,
                  len(_LABEL.sub("", path)))


def _typed(shape: Shape, values: list[str]) -> Any:
    if shape.type_name == "list":
        return [_typed(shape.member, [value]) for value in values]
    value = values[-1]
    if shape.type_name in ("integer", "long"):
        return int(value)
    if shape.type_name == "boolean":
        return value.lower() == "true"
    return value


class ServiceApi:
    """A service's operations, as the installed botocore's model declares them."""

    def __init__(self, name: str, operations: set[str] | None = None):
        self.model = _service_model(name)
        self.name = self.model.signing_name
        self.operations = set(self.model.operation_names) if operations is None else operations
        routes = [_route(self.model.operation_model(op)) for op in self.model.operation_names
                  if "requestUri" in self.model.operation_model(op).http]
        # the more literal a route, the earlier it is tried; routes fixing query keys before those that do not
        self.routes = sorted(routes, key=lambda r: (-len(r.query), -r.literal))
        self.json_version = self.model.metadata.get("jsonVersion", "1.1")

    def read(self, environ: dict[str, Any], body: bytes) -> Call | None:
        """The call this request makes, or None if it is not one of the operations answered here."""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            operation = target.rpartition(".")[2]
            if operation not in self.operations:
                return None
            return Call(self.name, operation, json.loads(body or b"{}"), rest=False)
        route, found = self._match(environ)
        if route is None or route.operation.name not in self.operations:
            return None
        return Call(self.name, route.operation.name, self._rest_input(route, found, environ, body), rest=True)

    def _match(self, environ: dict[str, Any]) -> tuple[_Route | None, re.Match[str] | None]:
        method = environ.get("REQUEST_METHOD", "GET")
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
        path, _, query = raw.partition("?")
        keys = parse_qs(query, keep_blank_values=True)
        for route in self.routes:
            if route.method == method and all(key in keys for key in route.query):
                found = route.path.match(path)
                if found:
                    return route, found
        return None, None

    @staticmethod
    def _rest_input(route: _Route, found: re.Match[str], environ: dict[str, Any], body: bytes) -> dict[str, Any]:
        shape = route.operation.input_shape
        if shape is None:
            return {}
        members = shape.members
        payload = shape.serialization.get("payload")
        params: dict[str, Any] = {}
        if payload:
            params[payload] = body if members[payload].type_name == "blob" else json.loads(body or b"{}")
        elif body:
            params.update(json.loads(body))
        labels = dict(zip(route.labels, (unquote(value) for value in found.groups())))
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        for name, member in members.items():
            location, wire = member.serialization.get("location"), member.serialization.get("name", name)
            if location == "uri" and wire in labels:
                params[name] = _typed(member, [labels[wire]])
            elif location == "querystring" and wire in query:
                params[name] = _typed(member, query[wire])
            elif location == "header":
                value = environ.get("HTTP_" + wire.upper().replace("-", "_"))
                if value is not None:
                    params[name] = _typed(member, [value])
        return params

    def answer(self, call: Call, status: int, body: dict[str, Any]) -> Answer:
        """The response in the call's protocol; an error body carries `__type` (its code) and a message."""
        content = json.dumps(body, default=str).encode()
        reason = "OK" if status < 400 else "Bad Request" if status < 500 else "Internal Server Error"
        if not call.rest:
            return (f"{status} {reason}", [("Content-Type", f"application/x-amz-json-{self.json_version}"),
                                           ("Content-Length", str(len(content)))], content)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(content)))]
        if status >= 400:
            headers.append(("X-Amzn-ErrorType", str(body.get("__type", "ServiceException"))))
        else:
            status = self.model.operation_model(call.operation).http.get("responseCode", status)
        return f"{status} {reason}", headers, content


class LocalApis:
    """The services answered here, found by the service a request is signed for."""

    def __init__(self, services: dict[str, set[str] | None]):
        self.apis = {api.name: api for api in (ServiceApi(name, ops) for name, ops in services.items())}

    def read(self, environ: dict[str, Any], body: bytes) -> tuple[ServiceApi, Call] | None:
        scope = signed_for(environ)
        if scope is not None:
            api = self.apis.get(scope[1])
            call = api.read(environ, body) if api is not None else None
            return (api, call) if call is not None else None
        target = environ.get("HTTP_X_AMZ_TARGET", "")  # unsigned: the JSON protocol's target prefix says
        for api in self.apis.values():
            prefix = api.model.metadata.get("targetPrefix")
            if prefix and target.startswith(prefix + "."):
                call = api.read(environ, body)
                return (api, call) if call is not None else None
        return None


