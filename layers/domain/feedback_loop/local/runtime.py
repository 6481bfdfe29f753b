"""Runs a function's handler the way Lambda does: one event at a time per container.

A container is one fresh import of the function's `app.py` (its module-level state, such as the
Powertools resolver and caches, is its own). Concurrent invocations take idle containers and start
new ones up to a concurrency limit, as Lambda scales out.
"""

from __future__ import annotations

import importlib.util
import itertools
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from feedback_loop import settings
from feedback_loop.local.template import ACCOUNT_ID, REGION, FunctionSpec

_container_ids = itertools.count(1)


@dataclass
class LambdaContext:
    """The fields of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 10
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def load_module(spec: FunctionSpec) -> ModuleType:
    """Imports the function's module from its code folder, as a new container would."""
    module_name = spec.handler.rpartition(".")[0]
    path = spec.code_dir / f"{module_name.replace('.', '/')}.py"
    unique = f"feedback_loop_fn_{spec.logical_id}_{next(_container_ids)}"
    module_spec = importlib.util.spec_from_file_location(unique, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    settings.clear_cached()  # a new container reads the environment afresh, as a new process would
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[unique] = module  # as an import would, so that annotations resolve
    module_spec.loader.exec_module(module)
    return module


def load_handler(spec: FunctionSpec) -> Callable[[dict, Any], Any]:
    return getattr(load_module(spec), spec.handler.rpartition(".")[2])


class LocalFunction:
    def __init__(self, spec: FunctionSpec, max_concurrency: int = 8):
        self.spec = spec
        self.max_concurrency = max_concurrency
        self._idle: queue.LifoQueue[Callable[[dict, Any], Any]] = queue.LifoQueue()
        self._started = 0
        self._lock = threading.Lock()

    def _acquire(self) -> Callable[[dict, Any], Any]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            start_new = self._started < self.max_concurrency
            if start_new:
                self._started += 1
        if start_new:
            try:
                return load_handler(self.spec)
            except BaseException:
                with self._lock:
                    self._started -= 1
                raise
        return self._idle.get()

    def warm(self) -> None:
        """Starts one container now, so that import errors show at start-up, not on a request."""
        self._idle.put(self._acquire())

    def invoke(self, event: dict) -> Any:
        handler = self._acquire()
        try:
            context = LambdaContext(function_name=self.spec.logical_id, timeout_seconds=self.spec.timeout)
            return handler(event, context)
        finally:
            self._idle.put(handler)
