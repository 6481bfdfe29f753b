"""The local stack keeps its state in its data directory: Ctrl-C and start again keeps every
acknowledged event; so does a hard kill, through the journal (test_durability.py kills mid-load)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import requests

from feedback_loop.client import FeedbackClient

from ..serving import serve

pytestmark = pytest.mark.integration


def send(client: FeedbackClient, prefix: str, n: int) -> dict[str, dict]:
    events = [client.event(f"{prefix}-{i % 40}", "explicit_rating", 1 + i % 5, user_id=f"u{i}") for i in range(n)]
    acknowledged = {}
    for start in range(0, n, 100):
        result = client.send_batch(events[start:start + 100])
        acknowledged |= {r.event_id: events[start + r.index] for r in result.results if r.status in (200, 201)}
    return acknowledged


def stored_events(client: FeedbackClient, prefix: str) -> int:
    return sum(client.summary(f"{prefix}-{i}").events for i in range(40))


def test_ctrl_c_and_restart_keep_every_acknowledged_event(tmp_path: Path) -> None:
    first = serve(tmp_path)
    client = FeedbackClient(first.url, first.key)
    acknowledged = send(client, "keep", 600)
    client.register_change("prompt-v9", "2026-05-01T00:00:00Z")
    assert len(acknowledged) == 600
    code, out, err = first.stop()
    assert code == 0, err
    assert (tmp_path / "snapshot" / "counts.json").exists()

    second = serve(tmp_path)
    try:
        assert "restored: " in second.output and "restored: nothing" not in second.output
        again = FeedbackClient(second.url, first.key)  # the old key was kept too
        assert stored_events(again, "keep") == 600
        assert [c.name for c in again.list_changes()] == ["prompt-v9"]
        # the events are the same events: sending them again stores nothing
        duplicate = again.send_batch(list(acknowledged.values())[:50])
        assert [r.status for r in duplicate.results] == [200] * 50
        assert stored_events(again, "keep") == 600
    finally:
        second.stop()


def test_a_hard_kill_before_any_snapshot_keeps_events_changes_and_keys(tmp_path: Path) -> None:
    first = serve(tmp_path, extra=("--snapshot-seconds", "100000"))  # only the journal holds what follows
    client = FeedbackClient(first.url, first.key)
    acknowledged = send(client, "early", 200)
    client.register_change("prompt-v10", "2026-05-01T00:00:00Z")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=30)
    assert not (tmp_path / "snapshot").exists()

    second = serve(tmp_path)
    try:
        assert "journal lines" in second.output
        kept = FeedbackClient(second.url, first.key)  # the key was journaled when serve created it
        assert stored_events(kept, "early") == 200
        assert [c.name for c in kept.list_changes()] == ["prompt-v10"]
        duplicate = kept.send_batch(list(acknowledged.values())[:50])
        assert [r.status for r in duplicate.results] == [200] * 50
    finally:
        second.stop()


def test_fresh_starts_empty(tmp_path: Path) -> None:
    first = serve(tmp_path)
    send(FeedbackClient(first.url, first.key), "gone", 50)
    first.stop()
    second = serve(tmp_path, extra=("--fresh",))
    try:
        assert "restored: nothing" in second.output
        assert requests.get(f"{second.url}/v1/requests/gone-0/feedback", headers={"x-api-key": first.key},
                            timeout=10).status_code == 401  # the old key went with the data
    finally:
        second.stop()
