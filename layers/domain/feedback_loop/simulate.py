"""Simulated LLM traffic with planted truths, for the demo, the tests and the benchmarks.

Each request has a latent quality q in [0, 1]. Users vote on q (shifted by their cohort's mood),
the production evaluator scores q with noise, except on one query type where it is overconfident.
A registered prompt change raises q for one query type; another registered change does nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from feedback_loop.models.changes import Change


@dataclass(frozen=True)
class Cohort:
    name: str
    share: float  # of requests
    feedback_rate: float  # chance a request gets explicit feedback
    mood: float  # shift of the quality users perceive


@dataclass(frozen=True)
class Scenario:
    start: datetime = datetime(2026, 5, 4, tzinfo=timezone.utc)
    days: int = 14
    requests: int = 20_000
    cohorts: tuple[Cohort, ...] = (
        Cohort("free", 0.6, 0.04, -0.10),
        Cohort("pro", 0.3, 0.15, 0.0),
        Cohort("enterprise", 0.1, 0.40, 0.10),
    )
    query_types: tuple[str, ...] = ("summarize", "code", "qa")
    miscalibrated_query_type: str = "code"  # the evaluator scores it high whatever its quality
    effect_query_type: str = "summarize"
    effect_size: float = 0.15  # added to q for the effect query type after the change
    change_at_day: float = 7.0
    seed: int = 7
    prompts: dict[str, list[str]] = field(default_factory=lambda: {
        "summarize": ["Summarise this support ticket for the on-call engineer.",
                      "Give a three-bullet summary of the meeting notes.",
                      "Summarise the customer's complaint in one sentence."],
        "code": ["Write a Python function that deduplicates a list and keeps order.",
                 "Fix the off-by-one error in this pagination query.",
                 "Write a SQL query for monthly active users."],
        "qa": ["What is our refund policy for annual plans?",
               "How do I rotate an API key?",
               "Which regions is the service available in?"],
    })

    @property
    def change_at(self) -> datetime:
        return self.start + timedelta(days=self.change_at_day)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def changes(self) -> list[Change]:
        return [
            Change(name="prompt-v8", description="Rewrote the summarisation prompt",
                   effective_at=self.change_at, segment={"query_type": self.effect_query_type}),
            Change(name="model-minor-bump", description="Patch release of the model; no behaviour change",
                   effective_at=self.change_at, segment={"query_type": "qa"}),
        ]


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _output(rng: random.Random, query_type: str, quality: float) -> str:
    good = {"summarize": "The customer cannot log in since the update; password reset loops back to the login page.",
            "code": "def dedupe(items):\n    seen = set()\n    return [x for x in items if not (x in seen or seen.add(x))]",
            "qa": "Annual plans can be refunded pro rata within 30 days; contact billing with the order id."}
    bad = {"summarize": "The ticket is about a problem. The user has an issue with the product and wants help.",
           "code": "def dedupe(items):\n    return list(set(items))  # loses order",
           "qa": "Refunds are possible. Please check the website for more information about refunds."}
    return good[query_type] if rng.random() < quality else bad[query_type]


def _vote(rng: random.Random, perceived: float) -> dict[str, Any]:
    """Half thumbs, half 1-5 ratings; both follow perceived quality with a little rater noise."""
    if rng.random() < 0.5:
        up = perceived + rng.gauss(0, 0.1) > 0.6
        return {"feedback_type": "explicit_thumbs_up" if up else "explicit_thumbs_down", "value": True}
    return {"feedback_type": "explicit_rating", "value": max(1, min(5, round(1 + 5 * perceived - 0.5 + rng.gauss(0, 0.4))))}


def _vote_score(vote: dict[str, Any]) -> float:
    if vote["feedback_type"] == "explicit_rating":
        return (vote["value"] - 1) / 4
    return 1.0 if vote["feedback_type"] == "explicit_thumbs_up" else 0.0


def simulate(scenario: Scenario | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Eval log records and feedback events (the export contract: timestamps present)."""
    records: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for record, request_events in iter_simulation(scenario):
        records.append(record)
        events.extend(request_events)
    return records, events


def iter_simulation(scenario: Scenario | None = None) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each request's eval record with its feedback events, in time order, one at a time."""
    s = scenario or Scenario()
    rng = random.Random(s.seed)
    weights = [c.share for c in s.cohorts]
    span = s.days * 86400
    for n in range(s.requests):
        events: list[dict[str, Any]] = []
        at = s.start + timedelta(seconds=span * (n + rng.random()) / s.requests)
        cohort = rng.choices(s.cohorts, weights)[0]
        query_type = rng.choice(s.query_types)
        after = at >= s.change_at
        quality = _clip(rng.betavariate(4, 3) + (s.effect_size if after and query_type == s.effect_query_type else 0))
        if query_type == s.miscalibrated_query_type:
            overall = _clip(0.82 + rng.gauss(0, 0.05))
        else:  # users say good above about 0.6, the evaluator above 0.7: offset by 0.1
            overall = _clip(quality + 0.1 + rng.gauss(0, 0.08))
        request_id = f"req-{s.seed}-{n:07d}"
        prompt_version = ("v8" if after else "v7") if query_type == s.effect_query_type else "v7"
        record = {
            "request_id": request_id,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "prompt": rng.choice(s.prompts[query_type]),
            "output": _output(rng, query_type, quality),
            "eval_scores": {"overall": round(overall, 4), "coherence": round(_clip(overall + rng.gauss(0, 0.05)), 4)},
            "metadata": {"user_cohort": cohort.name, "query_type": query_type, "prompt_version": prompt_version,
                         "model": "m-2026-05"},
        }
        perceived = _clip(quality + cohort.mood)
        voters = (1 + (rng.random() < 0.15)) if rng.random() < cohort.feedback_rate else 0
        for voter in range(voters):
            user = f"user-{cohort.name}-{rng.randrange(5000)}"
            when = at + timedelta(seconds=rng.randint(5, 3600))
            base = {"request_id": request_id, "user_id": user, "user_cohort": cohort.name,
                    "timestamp": when.isoformat().replace("+00:00", "Z"), "event_id": f"{request_id}-e{voter}"}
            events.append({**base, **_vote(rng, perceived)})
            if rng.random() < 0.1:
                events.append({**base, "event_id": f"{request_id}-c{voter}", "feedback_type": "explicit_text_comment",
                               "value": "Too vague." if perceived < 0.5 else "Exactly what I needed."})
        if rng.random() < 0.3:
            kind = "implicit_usage" if rng.random() < quality else "implicit_discard"
            events.append({"request_id": request_id, "feedback_type": kind, "value": True,
                           "timestamp": (at + timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
                           "event_id": f"{request_id}-i", "user_cohort": cohort.name})
        yield record, events


def population_satisfaction(scenario: Scenario | None = None, draws: int = 200_000) -> float:
    """The expected human score over all requests, feedback or not (Monte Carlo of the same model),
    to check re-weighting against."""
    s = scenario or Scenario()
    rng = random.Random(s.seed + 1)
    total = 0.0
    for _ in range(draws):
        cohort = rng.choices(s.cohorts, [c.share for c in s.cohorts])[0]
        query_type = rng.choice(s.query_types)
        after = rng.random() * s.days >= s.change_at_day
        quality = _clip(rng.betavariate(4, 3) + (s.effect_size if after and query_type == s.effect_query_type else 0))
        total += _vote_score(_vote(rng, _clip(quality + cohort.mood)))
    return total / draws
