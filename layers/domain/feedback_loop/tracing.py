"""The API function's X-Ray tracer, created only where detailed tracing is on.

Powertools' Tracer imports the X-Ray SDK when it is created, about 0.2 s of a cold start, even when
POWERTOOLS_TRACE_DISABLED is set. Lambda's own traces (Tracing: Active in the template) need no
SDK: they show each invocation, its init and its duration. The SDK adds a subsegment per route and
per AWS call; `ApiDetailedTracing=true` in the template turns it on (POWERTOOLS_TRACE_DISABLED=false).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class Untraced:
    """Tracer's decorators, doing nothing."""

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda inner: inner)

    def capture_lambda_handler(self, handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        return handler if handler is not None else (lambda inner: inner)


def optional_tracer() -> Any:
    """Powertools' Tracer if POWERTOOLS_TRACE_DISABLED is "false", else decorators that do nothing."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in ("false", "0"):
        from aws_lambda_powertools import Tracer

        return Tracer()
    return Untraced()
