"""`feedback-loop demo`: the local stack with simulated traffic.

Today it exercises collection end to end (the client, the HTTP API, the emulated table). The weekly
analysis, retraining and deployment join the loop as they land.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from feedback_loop.client import FeedbackApiError, FeedbackClient
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.local.stack import LocalStack
from feedback_loop.logic.keys import create_key

COHORTS = {"free": 0.05, "pro": 0.25, "enterprise": 0.6}  # chance that a request gets explicit feedback
QUERY_TYPES = ("summarize", "code", "qa")


def simulate(client: FeedbackClient, requests_count: int, rng: random.Random) -> Counter[str]:
    """Sends feedback for `requests_count` simulated LLM requests; returns what the API answered."""
    outcome: Counter[str] = Counter()
    start = datetime.now(timezone.utc) - timedelta(days=7)
    batch: list[dict] = []
    for n in range(requests_count):
        cohort = rng.choice(list(COHORTS))
        request_id = f"req-{n:06d}"
        moment = start + timedelta(seconds=n * 7 * 86400 / max(1, requests_count))
        common = {"user_id": f"user-{rng.randrange(200)}", "user_cohort": cohort, "timestamp": moment,
                  "metadata": {"query_type": rng.choice(QUERY_TYPES)}}
        if rng.random() < COHORTS[cohort]:
            batch.append(client.event(request_id, "explicit_rating", rng.randint(1, 5), **common))
            if rng.random() < 0.2:
                batch.append(client.event(request_id, "explicit_text_comment", "useful, but too long", **common))
        batch.append(client.event(request_id, rng.choice(["implicit_usage", "implicit_discard"]), True, **common))
        if len(batch) >= 200:
            outcome.update(_send(client, batch))
            batch = []
    if batch:
        outcome.update(_send(client, batch))
    # A retried single event and a malformed one: the first is stored once, the second refused.
    first = client.thumbs_up("req-000000", event_id="demo-retry")
    again = client.thumbs_up("req-000000", event_id="demo-retry")
    outcome["retry returned the original"] += int(first == again)
    try:
        client.rate("req-000001", 6)
    except FeedbackApiError as error:
        outcome[f"refused {error.status} at {error.fields[0]['field']}"] += 1
    return outcome


def _send(client: FeedbackClient, batch: list[dict]) -> Counter[str]:
    result = client.send_batch(batch)
    return Counter({"stored": result.stored, "duplicates": result.duplicates, "rejected": result.rejected})


def run_demo(template: str | None = None, requests_count: int = 400, seed: int = 7) -> int:
    rng = random.Random(seed)
    began = time.monotonic()
    with LocalStack(template=template) as stack:
        key = create_key(FeedbackTable(stack.table_name), "demo").plaintext
        client = FeedbackClient(stack.api_url, key)
        print(f"local stack up at {stack.api_url} (emulated AWS at {stack.aws_endpoint})")
        outcome = simulate(client, requests_count, rng)
        print(f"sent feedback for {requests_count} simulated requests through the HTTP API:")
        for name, count in sorted(outcome.items()):
            print(f"  {name:<32} {count}")
        summary = client.summary("req-000000")
        print(f"summary of req-000000: {summary.events} events, human score {summary.human.score}, "
              f"label {summary.human.label}")
    print(f"done in {time.monotonic() - began:.1f} s. The weekly analysis, retraining and deployment "
          "steps are not built yet.")
    return 0
