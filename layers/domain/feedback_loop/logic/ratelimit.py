"""Per-key rate limits: a fixed one-minute window per API key, counted in the table.

Each request adds one to its key's counter for the current minute with a conditional update, so the
limit holds across every API container (an in-memory bucket would allow it once per container).
A refused request is not counted. The counter items expire through the table's TTL an hour later.
A container remembers a key's full window and refuses the rest of it without a call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.models.errors import RateLimited


@dataclass
class RateLimiter:
    table: FeedbackTable
    per_minute: int  # requests per key and minute; 0 turns the limit off
    window_seconds: int = 60

    def __post_init__(self) -> None:
        self._full: dict[str, int] = {}  # key_id -> end of the window known to be full

    def check(self, key_id: str, now: float | None = None) -> None:
        """Counts one request of the key, or raises RateLimited with the seconds until the next window."""
        if self.per_minute <= 0:
            return
        now = time.time() if now is None else now
        start = int(now // self.window_seconds) * self.window_seconds
        end = start + self.window_seconds
        retry_after = max(1, math.ceil(end - now))
        if self._full.get(key_id, 0) > now:
            raise RateLimited(f"more than {self.per_minute} requests a minute with this key", retry_after)
        if not self.table.increment_below(f"RATE#{key_id}", f"W#{start}", self.per_minute, end + 3600):
            self._full[key_id] = end
            raise RateLimited(f"more than {self.per_minute} requests a minute with this key", retry_after)
