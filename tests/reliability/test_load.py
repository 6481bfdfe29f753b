"""Load with retries and concurrent duplicates through the local HTTP API, then reconciliation:
every acknowledged event stored exactly once, nothing else stored, summaries equal a recount.
The CI size is small; `benchmarks/load.py` runs 20,000 events from 32 clients."""

from __future__ import annotations

import pytest

from feedback_loop.logic.keys import create_key

from .loadgen import make_events, reconcile, run_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_concurrent_load_with_retries_and_duplicates_reconciles(stack, table, project) -> None:
    key = create_key(table, project).plaintext
    events = make_events(2000, seed=3)
    result = run_load(stack.api_url, key, events, clients=16, seed=4)
    figures = result.figures()
    assert result.retried > 0 and result.concurrent_twins > 0  # the faults really happened
    assert set(figures["statuses"]) <= {200, 201, 207, 503}  # never a 4xx for a valid event, never a 500
    outcome = reconcile(table, project, stack.api_url, key, events, result, summaries=60)
    assert outcome == {"acknowledged": 2000, "stored": 2000, "lost": 0, "duplicated": 0, "stored_unacknowledged": 0,
                       "stored_unknown": 0, "malformed_items": 0, "summaries_checked": 60, "summary_mismatches": 0,
                       "first_mismatches": []}
