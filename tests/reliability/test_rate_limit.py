"""Per-key rate limits: atomic across containers, 429 with Retry-After, per key, and configurable
in the template (KeyRateLimitPerMinute)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from feedback_loop.logic.ratelimit import RateLimiter
from feedback_loop.models.errors import RateLimited

from ..serving import serve

pytestmark = pytest.mark.integration


def test_the_limit_holds_across_concurrent_containers(table, project) -> None:
    # eight limiters stand for eight API containers, each with its own memory
    limiters = [RateLimiter(table, per_minute=50) for _ in range(8)]
    now = 1_800_000_030.0  # 30 s into a window

    def hit(n: int) -> bool:
        try:
            limiters[n % 8].check(f"{project}-key", now=now)
            return True
        except RateLimited as error:
            assert error.retry_after == 30
            return False

    with ThreadPoolExecutor(16) as pool:
        allowed = list(pool.map(hit, range(160)))
    assert sum(allowed) == 50  # exactly the limit, whatever the interleaving
    # the next window starts from zero; another key has its own count
    limiters[0].check(f"{project}-key", now=now + 60)
    limiters[0].check(f"{project}-other", now=now)


class CountingTable:
    """The table, counting the rate limiter's writes."""

    def __init__(self, table) -> None:
        self.table, self.writes = table, 0

    def add_to_counter(self, *args, **kwargs) -> int:
        self.writes += 1
        return self.table.add_to_counter(*args, **kwargs)


@pytest.mark.parametrize("per_minute, batch, containers", [(1000, 10, 4), (600, 6, 8), (6000, 50, 3)])
def test_batched_counts_write_once_per_batch_and_overshoot_at_most_containers_times_batch(
        table, project, per_minute: int, batch: int, containers: int) -> None:
    counting = CountingTable(table)
    limiters = [RateLimiter(counting, per_minute=per_minute, batch=batch) for _ in range(containers)]
    assert RateLimiter(counting, per_minute=per_minute).batch == batch  # the default: 1% of the limit, at most 50
    key, now = f"{project}-batched-{per_minute}", 1_800_000_010.0

    def hit(n: int) -> bool:
        try:
            limiters[n % containers].check(key, now=now)
            return True
        except RateLimited:
            return False

    with ThreadPoolExecutor(containers) as pool:
        admitted = sum(pool.map(hit, range(2 * per_minute)))
    assert per_minute <= admitted <= per_minute + containers * (batch - 1)
    stored = int(table.get(f"RATE#{key}", "W#1800000000")["n"])
    assert stored >= per_minute and counting.writes <= stored // batch + containers
    assert counting.writes <= admitted / batch + containers  # about one write per batch, not per request


def test_zero_turns_the_limit_off(table, project) -> None:
    limiter = RateLimiter(table, per_minute=0)
    for _ in range(100):
        limiter.check(f"{project}-key", now=1_800_000_000.0)
    assert table.get(f"RATE#{project}-key", "W#1800000000") is None  # not even counted


def test_the_api_answers_429_with_retry_after_per_key(tmp_path: Path) -> None:
    served = serve(tmp_path, "KeyRateLimitPerMinute=5", "KeyCacheSeconds=0")
    try:
        # the counts are per minute of the clock: seven requests that straddle a minute's end would see
        # two windows (a 201 where the limit's 429 belongs), so they start early in one
        left = 60 - time.time() % 60
        if left < 15:
            time.sleep(left + 0.5)
        body = {"request_id": "r-1", "feedback_type": "explicit_thumbs_up", "value": True}
        first = {"x-api-key": served.key, "Origin": "https://shop.example.test"}
        answers = [requests.post(f"{served.url}/v1/feedback", json=body, headers=first, timeout=10) for _ in range(7)]
        assert [a.status_code for a in answers] == [201] * 5 + [429, 429]
        refused = answers[-1]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["Access-Control-Allow-Origin"]  # a browser can read why
        assert refused.json()["error"]["fields"][0]["field"] == "authorization"
        # public routes are not limited
        assert requests.get(f"{served.url}/v1/health", timeout=10).status_code == 200
    finally:
        code, _, err = served.stop()
    assert code == 0, err
