"""The rules of the API that JSON Schema cannot state, taught to schemathesis (loaded with
SCHEMATHESIS_HOOKS by test_fuzz.py).

Each of them is stated in words in the OpenAPI document (test_fuzz checks that it is), and each
would otherwise make a request that the document calls valid look refused:
- a feedback `timestamp` lies between 2000-01-01 and 5 minutes after receipt (relative to now);
- a change's `control` and `treatment` differ (a relation between two fields);
- `metadata` is at most 4096 bytes as compact JSON and 8 levels deep (a size of the whole value).
Requests are brought within them just before they are sent, in every phase; nothing else changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import schemathesis

from feedback_loop.models.feedback import EARLIEST, MAX_FUTURE_SKEW, _bounded_metadata


def _timestamp_within_range(body: dict[str, Any]) -> None:
    try:
        moment = datetime.fromisoformat(body["timestamp"])
    except (KeyError, TypeError, ValueError):
        return  # absent, null, or not a date-time: the schema's own business
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if not EARLIEST <= moment <= datetime.now(timezone.utc) + MAX_FUTURE_SKEW:
        body["timestamp"] = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()


def _arms_differ(body: dict[str, Any]) -> None:
    control = body.get("control")
    if isinstance(control, str) and control == body.get("treatment"):
        body["treatment"] = control[:255] + ("b" if not control.endswith("b") else "c")


def _metadata_within_bounds(body: dict[str, Any]) -> None:
    if isinstance(body.get("metadata"), dict):
        try:
            _bounded_metadata(body["metadata"])
        except ValueError:
            body["metadata"] = {}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    if not isinstance(case.body, dict) or case.method.upper() != "POST":
        return
    if case.path == "/v1/feedback":
        _timestamp_within_range(case.body)
        _metadata_within_bounds(case.body)
    elif case.path == "/v1/changes":
        _arms_differ(case.body)
