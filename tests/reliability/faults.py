"""Faults between the functions and the emulator, injected with botocore's event hooks.

A `before-send` handler that returns a response short-circuits the HTTP call, exactly where a
throttled or failing AWS endpoint would answer; an `after-call` handler that raises makes a call
whose effect happened look failed (a lost response).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _dynamodb_error(status: int, kind: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": kind}, json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": message}).encode()


class Faults:
    """Injects a fault into a share of a client's calls of the given operations."""

    def __init__(self, client: Any, seed: int = 0):
        self.client = client
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def _roll(self, share: float) -> bool:
        with self.lock:
            return self.rng.random() < share

    @contextmanager
    def answer(self, kind: str, share: float = 1.0, operations: tuple[str, ...] = ()) -> Iterator["Faults"]:
        """kind: "throttle" (400 ProvisionedThroughputExceeded), "server" (500), or "vanished" (a conditional write
        answers ConditionalCheckFailed without the item it says exists, and nothing is stored)."""
        service = self.client.meta.service_model.service_name

        def handler(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
            operation = event_name.rsplit(".", 1)[-1]
            with self.lock:
                self.calls[operation] += 1
            if operations and operation not in operations:
                return None
            if not self._roll(share):
                return None
            with self.lock:
                self.injected[f"{kind}:{operation}"] += 1
            if kind == "throttle":
                status, headers, body = _dynamodb_error(400, "ProvisionedThroughputExceededException", "injected throttle")
            elif kind == "server":
                status, headers, body = _dynamodb_error(500, "InternalServerError", "injected server error")
            elif kind == "vanished":
                status, headers, body = _dynamodb_error(400, "ConditionalCheckFailedException",
                                                        "injected: the conditional request failed")
            else:
                raise ValueError(kind)
            return AWSResponse(request.url, status, headers, _Raw(body))

        self.client.meta.events.register_first(f"before-send.{service}", handler)
        try:
            yield self
        finally:
            self.client.meta.events.unregister(f"before-send.{service}", handler)

    @contextmanager
    def s3_errors(self, once: bool = True, operations: tuple[str, ...] = (), delay: float = 0.0) -> Iterator["Faults"]:
        """S3 answers 500 InternalError: to the first attempt of every call (`once`), or to every
        attempt; `delay` seconds of latency are added to every call first."""
        seen: set[tuple[str, str, bytes]] = set()

        def handler(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
            operation = event_name.rsplit(".", 1)[-1]
            if delay:
                time.sleep(delay)
            if operations and operation not in operations:
                return None
            identity = (request.method, request.url, bytes(request.body or b""))
            with self.lock:
                self.calls[operation] += 1
                if once and identity in seen:
                    return None
                seen.add(identity)
                self.injected[f"s3:{operation}"] += 1
            body = b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>injected</Message></Error>"
            return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, _Raw(body))

        self.client.meta.events.register_first("before-send.s3", handler)
        try:
            yield self
        finally:
            self.client.meta.events.unregister("before-send.s3", handler)

    @contextmanager
    def lose_responses(self, operation: str, times: int = 1) -> Iterator["Faults"]:
        """The call reaches the emulator and takes effect; its answer is lost `times` times."""
        service = self.client.meta.service_model.service_name
        left = [times]

        def handler(**_: Any) -> None:
            with self.lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
                self.injected[f"lost:{operation}"] += 1
            raise ConnectionClosedError(endpoint_url="injected: the response was lost")

        self.client.meta.events.register_first(f"after-call.{service}.{operation}", handler)
        try:
            yield self
        finally:
            self.client.meta.events.unregister(f"after-call.{service}.{operation}", handler)
