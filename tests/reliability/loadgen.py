"""A load run against the HTTP API, and its reconciliation with the table.

Many client threads send feedback events, singly and in batches; a share of the requests is
retried with the same event_ids after its answer (a client that lost the response), and a share is
sent twice at the same moment from two threads. A 503 (or 429) is resent until acknowledged. Then
every acknowledged event must be stored exactly once, nothing else stored, every stored item whole,
and each request's summary must equal a recount from the client's own log.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from feedback_loop.dal import items
from feedback_loop.dal.store import FeedbackTable, patient_dynamodb_client

TYPES = ("explicit_thumbs_up", "explicit_thumbs_down", "explicit_rating", "explicit_text_comment",
         "implicit_usage", "implicit_edit", "implicit_discard")


def make_events(n: int, seed: int, per_request: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    prefix = uuid.uuid4().hex[:8]
    events = []
    for i in range(n):
        kind = rng.choice(TYPES)
        value: Any = True
        if kind == "explicit_rating":
            value = rng.randint(1, 5)
        elif kind == "explicit_text_comment":
            value = rng.choice(["too long", "wrong SQL", "perfect", "ünïcödé ✓", "<b>bold</b> claim"])
        elif kind == "implicit_edit":
            value = "edited answer " + str(rng.randrange(100))
        events.append({"request_id": f"load-{prefix}-{i // per_request}", "feedback_type": kind, "value": value,
                       "user_id": f"u{rng.randrange(50)}", "event_id": f"{prefix}-{i}",
                       "timestamp": f"2026-11-{rng.randint(1, 20):02d}T{rng.randint(0, 23):02d}:00:00Z"})
    return events


@dataclass
class LoadResult:
    events: int
    http_requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    retried: int = 0
    concurrent_twins: int = 0
    resent_after_503: int = 0
    unanswered: set[str] = field(default_factory=set)  # event_ids whose last request got no answer
    unexpected: list[str] = field(default_factory=list)  # bodies of answers the load did not expect

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else None  # noqa: E731
        return {"events": self.events, "http_requests": self.http_requests, "seconds": round(self.seconds, 2),
                "events_per_second": round(self.events / self.seconds, 1) if self.seconds else None,
                "p50_ms": pick(0.5), "p99_ms": pick(0.99), "mean_ms": statistics.fmean(ordered) * 1000 if ordered else None,
                "statuses": dict(self.statuses), "retried_requests": self.retried,
                "sent_twice_concurrently": self.concurrent_twins, "resent_after_503": self.resent_after_503}


def run_load(api_url: str, key: str, events: list[dict[str, Any]], clients: int = 32, seed: int = 1,
             retry_share: float = 0.10, twice_share: float = 0.02, server_may_die: bool = False) -> LoadResult:
    """`server_may_die`: a request that gets no answer (the server was killed) leaves its events
    unanswered instead of failing the run."""
    rng = random.Random(seed)
    work: list[list[dict[str, Any]]] = []
    position = 0
    while position < len(events):
        size = 1 if rng.random() < 0.8 else rng.randint(10, 50)
        work.append(events[position:position + size])
        position += size
    result = LoadResult(len(events))
    lock = threading.Lock()
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["x-api-key"] = key
        return local.session

    def send_once(chunk: list[dict[str, Any]]) -> dict[str, int]:
        """One HTTP request; returns event_id -> status."""
        single = len(chunk) == 1
        url = f"{api_url}/v1/feedback" if single else f"{api_url}/v1/feedback/batch"
        body = chunk[0] if single else {"events": chunk}
        began = time.perf_counter()
        try:
            answer = session().post(url, json=body, timeout=60)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):  # no (whole) answer
            if not server_may_die:
                raise
            with lock:
                result.unanswered.update(e["event_id"] for e in chunk)
            return {e["event_id"]: 0 for e in chunk}
        elapsed = time.perf_counter() - began
        with lock:
            result.http_requests += 1
            result.latencies.append(elapsed)
            result.statuses[answer.status_code] += 1
        if single or answer.status_code != 207:
            statuses = {e["event_id"]: answer.status_code for e in chunk}
        else:
            statuses = {chunk[r["index"]]["event_id"]: r["status"] for r in answer.json()["results"]}
        if set(statuses.values()) - {200, 201, 429, 503}:
            with lock:
                result.unexpected.append(f"{answer.status_code} {url} {answer.text[:400]}")
        return statuses

    def deliver(chunk: list[dict[str, Any]]) -> None:
        """Sends until every event is acknowledged (201 or 200), resending only what was not."""
        pending = chunk
        for attempt in range(30):
            statuses = send_once(pending)
            with lock:
                for event in pending:
                    if statuses[event["event_id"]] in (200, 201):
                        result.acknowledged[event["event_id"]] = event
            if 0 in statuses.values():  # no answer: the server is gone
                return
            left = [e for e in pending if statuses[e["event_id"]] not in (200, 201)]
            unexpected = [statuses[e["event_id"]] for e in left if statuses[e["event_id"]] not in (429, 503)]
            if unexpected:
                raise AssertionError(f"unexpected statuses {Counter(unexpected)}: {result.unexpected[-3:]}")
            if not left:
                return
            with lock:
                result.resent_after_503 += len(left)
            time.sleep(min(2.0, 0.05 * 2**attempt))
            pending = left
        raise AssertionError(f"{len(pending)} events never acknowledged")

    def job(index: int) -> None:
        chunk = work[index]
        roll = rng_rolls[index]
        if roll < twice_share:  # the same request twice at the same moment
            barrier = threading.Barrier(2)

            def twin() -> None:
                barrier.wait()
                deliver(chunk)

            threads = [threading.Thread(target=twin) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            with lock:
                result.concurrent_twins += 1
        else:
            deliver(chunk)
        if roll > 1 - retry_share:  # the answer "was lost": the client sends it all again
            deliver(chunk)
            with lock:
                result.retried += 1

    rng_rolls = [rng.random() for _ in work]
    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(job, range(len(work))))
    result.seconds = time.perf_counter() - began
    return result


def expected_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(e["feedback_type"] for e in events)
    ratings = [e["value"] for e in events if e["feedback_type"] == "explicit_rating"]
    return {"events": len(events), "counts": {t: counts.get(t, 0) for t in TYPES},
            "thumbs_up": counts["explicit_thumbs_up"], "thumbs_down": counts["explicit_thumbs_down"],
            "ratings": len(ratings), "mean_rating": statistics.fmean(ratings) if ratings else None,
            "comments": sorted(e["value"] for e in events if e["feedback_type"] == "explicit_text_comment")}


def stored_feedback(project: str, table_name: str, client: Any = None) -> list[dict[str, Any]]:
    """Every feedback item of the project, by one consistent scan (DynamoDB JSON)."""
    pages = (client or patient_dynamodb_client()).get_paginator("scan").paginate(
        TableName=table_name, ConsistentRead=True, FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": items.request_pk(project, "")}})
    return [raw for page in pages for raw in page["Items"]]


def reconcile(table: FeedbackTable, project: str, api_url: str, key: str, sent: list[dict[str, Any]],
              result: LoadResult, summaries: int = 100, seed: int = 0) -> dict[str, Any]:
    """Acknowledged vs stored, per event (one scan of the project's feedback items); the API's
    summaries of `summaries` random requests vs a recount from the client's log."""
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in result.acknowledged.values():
        by_request[event["request_id"]].append(event)
    sent_ids = {e["event_id"] for e in sent}
    stored_ids: Counter[str] = Counter()
    malformed_items = 0
    for raw in stored_feedback(project, table.table_name):
        stored_ids[raw["event_id"]["S"]] += 1
        if not {"feedback_type", "value", "timestamp", "received_at", "gsi1pk", "gsi1sk"} <= set(raw):
            malformed_items += 1
    summary_mismatches = []
    request_ids = sorted({e["request_id"] for e in sent})
    for request_id in random.Random(seed).sample(request_ids, min(summaries, len(request_ids))):
        summary = _get_with_retries(f"{api_url}/v1/requests/{request_id}/feedback", key)
        expected = expected_summary(by_request.get(request_id, []))
        found = {k: summary[k] for k in ("events", "counts", "thumbs_up", "thumbs_down", "ratings")}
        found["mean_rating"] = summary["mean_rating"]
        found["comments"] = sorted(c["text"] for c in summary["comments"])
        if found != expected and not _close(found, expected):
            summary_mismatches.append({"request_id": request_id, "found": found, "expected": expected})
    acknowledged = set(result.acknowledged)
    return {
        "acknowledged": len(acknowledged),
        "stored": sum(stored_ids.values()),
        "lost": len(acknowledged - set(stored_ids)),
        "duplicated": sum(n - 1 for n in stored_ids.values() if n > 1),
        "stored_unacknowledged": len(set(stored_ids) - acknowledged),
        "stored_unknown": len(set(stored_ids) - sent_ids),
        "malformed_items": malformed_items,
        "summaries_checked": min(summaries, len(request_ids)),
        "summary_mismatches": len(summary_mismatches),
        "first_mismatches": summary_mismatches[:3],
    }


def _get_with_retries(url: str, key: str, attempts: int = 10) -> dict[str, Any]:
    """A read as a client makes it: 503 and 429 are answers to try again after."""
    for attempt in range(attempts):
        answer = requests.get(url, headers={"x-api-key": key}, timeout=30)
        if answer.status_code not in (429, 503):
            answer.raise_for_status()
            return answer.json()
        time.sleep(min(2.0, 0.1 * 2**attempt))
    raise AssertionError(f"{url} answered {answer.status_code} {attempts} times")


def _close(found: dict[str, Any], expected: dict[str, Any]) -> bool:
    if found["mean_rating"] is None or expected["mean_rating"] is None:
        return False
    rest = lambda d: {k: v for k, v in d.items() if k != "mean_rating"}  # noqa: E731
    return rest(found) == rest(expected) and abs(found["mean_rating"] - expected["mean_rating"]) < 1e-9
