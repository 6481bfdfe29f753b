"""The product's own events on its EventBridge bus (source `feedback-loop`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

SOURCE = "feedback-loop"


def put_event(events: Any, bus: str, detail_type: str, detail: dict[str, Any], time: datetime | None = None) -> None:
    """Puts one event and fails loudly if the bus did not take it (put_events reports, not raises)."""
    entry: dict[str, Any] = {"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail, default=str),
                             "EventBusName": bus}
    if time is not None:
        entry["Time"] = time
    response = events.put_events(Entries=[entry])
    if response.get("FailedEntryCount"):
        raise RuntimeError(f"{detail_type} was not accepted by the bus {bus}: {response['Entries']}")
