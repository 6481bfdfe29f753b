"""The AWS emulator of the local stack: moto's server, one request at a time, DynamoDB writes durable;
Athena's API answered by local/athena.py, Firehose's by local/firehose.py; Lambda's Invoke answered by the local stack's functions
(so that moto's Step Functions interpreter, which executes the state machines here, calls them). Those
three are read in whichever protocol the client's botocore speaks (local/protocols.py).

moto keeps each table in plain dicts and is not safe under concurrent requests: two PutItems that
create the same new partition at the same moment can each install their own partition dict, and
the first write is then silently lost although it was answered 200 (moto's `Table.items` is a
defaultdict keyed by objects whose `__hash__` is Python code, so a thread switch can land between
the lookup and the insert). DynamoDB promises atomic single-item writes; this front gives the
emulator the same by running one request at a time under a lock (the GIL already allowed only one).

With a journal attached, every request that changed DynamoDB items appends the changed items to it
while it still holds the lock, and no request, write or read, is answered before the journal is on
disk up to the point that request saw: whatever a client was told was stored survives a crash.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.config import default_user_config
from moto.core.base_backend import BackendDict
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from feedback_loop.local.athena import LocalAthena
from feedback_loop.local.firehose import LocalFirehose
from feedback_loop.local.journal import Change, Journal
from feedback_loop.local.protocols import LocalApis, signed_for
from feedback_loop.local.template import REGION

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
# PartiQL can write items in ways the journal does not follow; the product never uses it
UNJOURNALED = {"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"}
# a function's invocation: (payload) -> (the response payload, the error kind or None)
Invoker = Callable[[str, bytes], tuple[bytes, str | None]]


def _written_keys(operation: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(table, attributes holding the key) of every item the request may have changed."""
    if operation == "PutItem":
        return [(body["TableName"], body["Item"])]
    if operation in ("UpdateItem", "DeleteItem"):
        return [(body["TableName"], body["Key"])]
    if operation == "BatchWriteItem":
        return [(table, r["PutRequest"]["Item"] if "PutRequest" in r else r["DeleteRequest"]["Key"])
                for table, requests in body["RequestItems"].items() for r in requests]
    return [(part["TableName"], part["Item"] if kind == "Put" else part["Key"])
            for entry in body["TransactItems"] for kind, part in entry.items() if kind in ("Put", "Update", "Delete")]


class DynamoDBImages:
    """Reads items as they stand in moto's backend (called under the emulator's lock)."""

    def __init__(self, account_id: str = DEFAULT_ACCOUNT_ID):
        self.account_id = account_id

    def changes(self, region: str, operation: str, body: dict[str, Any]) -> list[Change]:
        backend = dynamodb_backends[self.account_id][region]
        changes: list[Change] = []
        for table_name, attributes in _written_keys(operation, body):
            table = backend.get_table(table_name)
            names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
            key = {name: attributes[name] for name in names}
            item = table.get_item(DynamoType(key[table.hash_key_attr]),
                                  DynamoType(key[table.range_key_attr]) if table.range_key_attr else None)
            changes.append((table_name, key, item.to_json()["Attributes"] if item is not None else None))
        return changes


class FairLock:
    """A lock granted in arrival order. threading.Lock lets the releasing thread take it again at
    once, so under load some requests wait many turns and their clients time out (2 s in the API)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder before us, who hands the lock over

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def __enter__(self) -> "FairLock":
        self.acquire()
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()


class SerializedEmulator:
    """WSGI middleware in front of moto's dispatcher: one request at a time, DynamoDB writes journaled."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.lock = FairLock()
        self.journal: Journal | None = None
        self.images = DynamoDBImages()
        self.athena = LocalAthena()
        self.firehose = LocalFirehose()
        self.invoke: Invoker | None = None  # set by the local stack once its functions exist
        self.apis = LocalApis({"athena": None, "firehose": None, "lambda": {"Invoke"}})

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        local = self.apis.read(environ, body)
        if local is not None and (local[1].service != "lambda" or self.invoke is not None):
            api, call = local  # answered here, outside the lock: a query, a delivery, a function runs on its own
            if call.service == "lambda":
                payload, error = self.invoke(call.params["FunctionName"], call.params.get("Payload", body))
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                           ("X-Amz-Executed-Version", "$LATEST")]
                start_response("200 OK", headers + ([("X-Amz-Function-Error", error)] if error else []))
                return [payload]
            service = self.athena if call.service == "athena" else self.firehose
            status, headers, content = api.answer(call, *service.handle(call.operation, call.params))
            start_response(status, headers)
            return [content]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.partition(".")[2] if target.startswith("DynamoDB_") else ""
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer.update(status=status, headers=headers)
            return lambda chunk: None

        with self.lock:
            journal = self.journal
            if journal is not None and operation in UNJOURNALED:
                return _refuse(start_response, f"{operation} is not supported by the durable local stack")
            result = self.app(environ, capture)
            try:
                content = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
            if journal is not None:
                position = journal.position
                if operation in WRITES and answer["status"].startswith("200"):
                    changes = self.images.changes(_region(environ), operation, json.loads(body))
                    if changes:
                        position = journal.append(operation, changes)
        if journal is not None:
            journal.sync(position)  # outside the lock: one fsync serves every request waiting here
        start_response(answer["status"], answer["headers"])
        return [content]


def _region(environ: dict[str, Any]) -> str:
    scope = signed_for(environ)
    return scope[0] if scope else REGION


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    return stream.read() if environ.get("wsgi.input_terminated") else b""


def _refuse(start_response: Callable[..., Any], message: str) -> list[bytes]:
    content = json.dumps({"__type": "com.amazon.coral.validate#ValidationException", "message": message}).encode()
    start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                       ("Content-Length", str(len(content)))])
    return [content]


class LocalEmulator:
    """moto's server on a local port, behind `SerializedEmulator`."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.front = SerializedEmulator(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def lock(self) -> FairLock:
        return self.front.lock

    def attach(self, journal: Journal | None) -> None:
        with self.front.lock:
            self.front.journal = journal

    def start(self) -> None:
        """Starts empty: moto's state is per process, and an earlier stack in it may have left some.
        Its Step Functions interpreter executes state machines, calling services on this port."""
        BackendDict.reset()
        default_user_config["stepfunctions"]["execute_state_machine"] = True
        os.environ["MOTO_PORT"] = str(self.port)
        self._server = make_server(self.host, self.port, self.front, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
