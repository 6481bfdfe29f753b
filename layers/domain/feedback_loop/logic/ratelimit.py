"""Per-key rate limits without a table write per request.

Each API container admits a key's requests against its own view of the key's count for the current
one-minute window: the total it last read from the table plus what it admitted since. Every `batch`
admitted requests it adds them to the key's counter in the table in one UpdateItem and reads the
new total back, so the table takes one write per `batch` requests instead of one per request. A
container that learns the window is full refuses the rest of it without a call.

What this allows: in one window, all containers together admit at most the limit plus
`containers × (batch − 1)` requests (each may hold up to batch − 1 admitted requests that the
others have not seen). `batch` defaults to 1% of the limit, between 1 and 50: 6,000 a minute gives
one write per 50 requests and, with 10 warm containers, at most 490 over. A limit under 200 a
minute has a batch of 1: exact, one write per request, as before. A request refused before its
batch is written is not counted; the one whose write finds the window already past the limit is
refused and stays counted. The counter items expire through the table's TTL an hour after their window.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from feedback_loop.dal.store import FeedbackTable
from feedback_loop.models.errors import RateLimited

MAX_BATCH = 50


def default_batch(per_minute: int) -> int:
    return max(1, min(MAX_BATCH, per_minute // 100))


@dataclass
class _Window:
    start: int
    total: int = 0  # the table's count for the window when this container last wrote
    pending: int = 0  # admitted here since, not yet written


@dataclass
class RateLimiter:
    table: FeedbackTable
    per_minute: int  # requests per key and minute; 0 turns the limit off
    window_seconds: int = 60
    batch: int | None = None  # admitted requests per table write; None: default_batch(per_minute)
    _windows: dict[str, _Window] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.batch is None:
            self.batch = default_batch(self.per_minute)
        if self.batch < 1:
            raise ValueError("batch must be at least 1")

    def check(self, key_id: str, now: float | None = None) -> None:
        """Admits one request of the key, or raises RateLimited with the seconds until the next window."""
        if self.per_minute <= 0:
            return
        now = time.time() if now is None else now
        start = int(now // self.window_seconds) * self.window_seconds
        end = start + self.window_seconds
        refusal = RateLimited(f"more than {self.per_minute} requests a minute with this key",
                              max(1, math.ceil(end - now)))
        with self._lock:  # one request at a time per Lambda container; the lock is for threaded callers
            window = self._windows.get(key_id)
            if window is None or window.start != start:
                window = self._windows[key_id] = _Window(start)
            if window.total + window.pending >= self.per_minute:
                raise refusal
            window.pending += 1
            if window.pending < self.batch:
                return
            written, window.pending = window.pending, 0
            window.total = self.table.add_to_counter(f"RATE#{key_id}", f"W#{start}", written, end + 3600)
            if window.total > self.per_minute:  # others filled the window meanwhile: this one is over
                raise refusal
