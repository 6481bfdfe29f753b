"""The demo's LLM application: its LLM judge grades every answer 1-10, it logs its requests through
the API, scores with the deployed evaluator once there is one, and sends its users' feedback through
the HTTP API with the Python client, faults included."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from feedback_loop.client import EvalLogger, FeedbackApiError, FeedbackClient
from feedback_loop.simulate import Scenario, iter_simulation

BATCH = 100
RETRY_SHARE = 0.05  # batches sent again, as a client does when a response is lost
DUPLICATE_SHARE = 0.02  # events sent again in a later batch
MALFORMED_SHARE = 0.02  # batches that carry one malformed event
ENDPOINT_BATCH = 256  # the evaluator's limit per invocation


def malformed_events(request_id: str, at: datetime) -> list[tuple[dict[str, Any], str]]:
    """Bad events a buggy integration sends, each with the field the API must name."""
    return [
        ({"request_id": request_id, "feedback_type": "explicit_rating", "value": 6}, "value"),
        ({"request_id": request_id, "feedback_type": "explicit_text_comment", "value": ""}, "value"),
        ({"request_id": request_id, "feedback_type": "implicit_teleport", "value": True}, "feedback_type"),
        ({"request_id": "", "feedback_type": "explicit_thumbs_up", "value": True}, "request_id"),
        ({"request_id": request_id, "feedback_type": "explicit_thumbs_up", "value": True,
          "timestamp": (at + timedelta(days=400)).isoformat()}, "timestamp"),
    ]


@dataclass
class Ledger:
    """What the client sent and what the API answered: the basis of the reconciliation."""

    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)  # event_id -> event (201 or 200)
    stored: int = 0  # 201 answers
    duplicates: int = 0  # 200 answers
    retried_batches: int = 0
    resent_events: int = 0
    malformed_sent: int = 0
    malformed_refused: int = 0  # 4xx naming the expected field
    refused_unexpectedly: list[str] = field(default_factory=list)

    def record(self, events: list[dict[str, Any]], statuses: list[tuple[int, list[str]]],
               expected_fields: dict[int, str]) -> None:
        for index, (event, (status, fields)) in enumerate(zip(events, statuses)):
            if index in expected_fields:
                if 400 <= status < 500 and expected_fields[index] in fields:
                    self.malformed_refused += 1
                else:
                    self.refused_unexpectedly.append(f"malformed event answered {status} naming {fields}")
            elif status in (200, 201):
                self.acknowledged[event["event_id"]] = event
                self.stored += status == 201
                self.duplicates += status == 200
            else:
                self.refused_unexpectedly.append(f"{event.get('event_id')}: {status} {fields}")


# The app's evaluator is an LLM judge: it grades 1-10 (logged as grade / 10), overconfident (its grades
# crowd the ends of the scale) and biased by query type (kind to summaries, harsh on Q&A; code it grades
# high whatever its quality, as the simulator's evaluator scores it). A calibrator is what fixes it.
JUDGE_BIAS = {"summarize": 1.0, "qa": -1.0}  # grades added, by query type
JUDGE_OVERCONFIDENCE = 2.5  # the judge's log-odds are this many times the evaluator's
JUDGE_NOISE = 0.6  # grades: the sd of the judge's own noise


def judge_grade(record: dict[str, Any]) -> int:
    """The judge's grade of a simulated record, from the simulator's evaluator score, its query type,
    and noise drawn from the request id (the same grade whatever the order the records come in)."""
    score = min(max(record["eval_scores"]["overall"], 0.02), 0.98)
    confident = 1 / (1 + ((1 - score) / score) ** JUDGE_OVERCONFIDENCE)
    draw = int.from_bytes(hashlib.sha256(record["request_id"].encode()).digest()[:8], "big") / 2**64
    noise = NormalDist(0, JUDGE_NOISE).inv_cdf(min(max(draw, 1e-12), 1 - 1e-12))
    bias = JUDGE_BIAS.get(record["metadata"].get("query_type"), 0.0)
    return int(min(10, max(1, round(1 + 9 * confident + bias + noise))))


def judged(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the app logs it: its overall score the judge's grade / 10."""
    grade = judge_grade(record)
    return {**record, "eval_scores": {**record["eval_scores"], "overall": grade / 10, "judge_grade": grade}}


class App:
    """One simulated LLM application of one project."""

    def __init__(self, scenario: Scenario, client: FeedbackClient, project: str, seed: int = 0, workers: int = 4):
        self.scenario = scenario
        self.client = client
        self.project = project
        self.rng = random.Random(seed)
        self.workers = workers
        self.ledger = Ledger()
        self._traffic = iter_simulation(scenario)
        self._pending: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        self._sent_events: list[dict[str, Any]] = []

    def week(self, until: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The requests made before `until` (not yet taken), and their feedback."""
        records, events = [], []
        for record, request_events in self._until(until):
            records.append(judged(record))
            events.extend(request_events)
        return records, events

    def _until(self, until: datetime) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        stamp = until.isoformat().replace("+00:00", "Z")
        while True:
            item = self._pending or next(self._traffic, None)
            self._pending = None
            if item is None:
                return
            if item[0]["timestamp"] >= stamp:
                self._pending = item
                return
            yield item

    def score(self, records: list[dict[str, Any]], runtime: Any, endpoint: str,
              advance: Callable[[int], None] = lambda n: None) -> dict[str, float]:
        """Scores the records with the deployed evaluator (eval_scores.overall := its P(good)), as the
        app does once the evaluator is in service; returns what the original evaluator had said."""
        original = {r["request_id"]: r["eval_scores"]["overall"] for r in records}
        for start in range(0, len(records), ENDPOINT_BATCH):
            chunk = records[start:start + ENDPOINT_BATCH]
            body = json.dumps({"inputs": [{"prompt": r["prompt"], "output": r["output"]} for r in chunk]})
            answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                             Accept="application/json", Body=body)
            scores = json.loads(answer["Body"].read())["scores"]
            for record, value in zip(chunk, scores):
                record["eval_scores"] = {"overall": round(float(value), 4)}
                record["metadata"]["evaluator"] = endpoint
            advance(len(chunk))
        return original

    def log_evals(self, records: list[dict[str, Any]], api_url: str, key: str,
                  advance: Callable[[int], None] = lambda n: None) -> None:
        """The app logs every request with its evaluator's scores as a production app does: through
        the client's EvalLogger (POST /v1/evals), which the stack writes to
        eval-logs/<project>/dt=YYYY-MM-DD/. Every record must be accepted."""
        logger = EvalLogger(api_url, key, flush_interval=0.5, max_queue=len(records) + 1)
        for record in records:
            logger.log(record)
            advance(1)
        logger.close(timeout=600)
        if logger.accepted != len(records):
            raise RuntimeError(f"the eval logger delivered {logger.accepted} of {len(records)} records "
                               f"(refused {logger.refused}, failed {logger.failed}, dropped {logger.dropped})")

    def send_feedback(self, events: list[dict[str, Any]], advance: Callable[[int], None] = lambda n: None) -> None:
        """Batches through the API, several at a time; some batches are retried whole, some events are
        sent again later, and some batches carry a malformed event."""
        batches: list[tuple[list[dict[str, Any]], dict[int, str], int]] = []
        for start in range(0, len(events), BATCH):
            batch = list(events[start:start + BATCH])
            if self._sent_events and self.rng.random() < DUPLICATE_SHARE * BATCH / 10:
                again = self.rng.sample(self._sent_events, min(len(self._sent_events), 10))
                self.ledger.resent_events += len(again)
                batch.extend(again)
            expected: dict[int, str] = {}
            if self.rng.random() < MALFORMED_SHARE * 5:
                bad, name = self.rng.choice(malformed_events(batch[0]["request_id"],
                                                             datetime.fromisoformat(batch[0]["timestamp"])))
                expected[len(batch)] = name
                batch.append({**bad, "event_id": f"bad-{start}-{self.rng.randrange(10**9)}"})
                self.ledger.malformed_sent += 1
            batches.append((batch, expected, 2 if self.rng.random() < RETRY_SHARE else 1))
            self._sent_events.extend(events[start:start + BATCH])

        def send(item: tuple[list[dict[str, Any]], dict[int, str], int]) -> None:
            batch, expected, times = item
            for _ in range(times):
                result = self.client.send_batch(batch)
                self.ledger.record(batch, [(r.status, [e.field for e in r.errors]) for r in result.results], expected)
            self.ledger.retried_batches += times - 1
            advance(sum(1 for i in range(len(batch)) if i not in expected))

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(send, batches))

    def send_one_malformed(self, request_id: str) -> tuple[int, str] | None:
        """A single malformed POST: the API must answer 4xx naming the field."""
        self.ledger.malformed_sent += 1
        try:
            self.client.rate(request_id, 0)
        except FeedbackApiError as error:
            fields = [f["field"] for f in error.fields]
            if 400 <= error.status < 500 and "value" in fields:
                self.ledger.malformed_refused += 1
            return error.status, ", ".join(fields)
        self.ledger.refused_unexpectedly.append("a rating of 0 was accepted")
        return None
