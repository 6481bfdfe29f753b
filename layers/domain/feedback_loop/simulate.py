"""Simulated LLM traffic with planted truths, for the demo, the tests and the benchmarks.

Each request has a latent quality q in [0, 1]. Users vote on q (shifted by their cohort's mood),
the production evaluator scores q with noise, except on one query type where it is overconfident.
A registered prompt change raises q for one query type; another registered change does nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from feedback_loop.models.changes import Change


@dataclass(frozen=True)
class Task:
    prompt: str
    points: tuple[tuple[str, str], ...]  # (done well, fumbled) for each point an answer should make
    joiner: str = " "


TASKS: dict[str, tuple[Task, ...]] = {
    "summarize": (
        Task("Summarise this support ticket for the on-call engineer: SSO users locked out after today's deploy.", (
            ("Since the 14:05 deploy of auth-service v2.3, SSO users cannot log in.",
             "The customer says something is wrong with logging in."),
            ("Password reset loops back to the login page, so there is no workaround.",
             "They tried a few things but it did not help."),
            ("About 300 enterprise accounts are affected, including Acme and Globex.", "Some users might be affected."),
            ("Rolling back to v2.2 restored access in staging.", "The team should probably look into it."),
            ("Next step: roll back production and page the identity team.",
             "Please let me know if you need anything else."))),
        Task("Give a five-bullet summary of the Q3 planning meeting notes.", (
            ("- The EU region launch moves to 14 October.", "- The meeting covered a number of topics."),
            ("- The data platform budget is approved at 1.2M.", "- Money was discussed."),
            ("- Priya owns the migration plan, due Friday.", "- Someone will follow up on next steps."),
            ("- Support hiring is frozen until Q4.", "- There were some concerns about people."),
            ("- Open: whether to sunset the legacy API this year.", "- Overall it was a productive meeting.")),
             joiner="\n"),
    ),
    "code": (
        Task("Write a Python function that deduplicates a list and keeps the original order.", (
            ("def dedupe(items: list) -> list:", "def dedupe(items):"),
            ("    seen = set()", "    # TODO: order"),
            ("    return [x for x in items if not (x in seen or seen.add(x))]", "    return list(set(items))"),
            ("# keeps the first occurrence of each item, O(n)", "# sets are fast, so this is efficient"),
            ("assert dedupe([3, 1, 3, 2]) == [3, 1, 2]", "# note: the order may change")),
             joiner="\n"),
        Task("Fix the off-by-one error in this pagination query: OFFSET :page * :size.", (
            ("Pages start at 1, so the offset must be (page - 1) * size.", "The query looks mostly fine."),
            ("SELECT * FROM orders ORDER BY id LIMIT :size OFFSET (:page - 1) * :size;",
             "SELECT * FROM orders LIMIT :size OFFSET :page * :size;"),
            ("ORDER BY id keeps the pages stable between calls.", "You could add an index if it is slow."),
            ("For deep pages, keyset pagination (WHERE id > :last_id) avoids scanning skipped rows.",
             "Pagination is a common source of bugs."),
            ("Add a test that page 1 returns the first row.", "Try it and see if it works.")),
             joiner="\n"),
    ),
    "qa": (
        Task("What is our refund policy for annual plans?", (
            ("Annual plans can be refunded within 30 days of purchase.", "Refunds are possible in some cases."),
            ("The refund is pro rata for the unused months.", "The amount depends on various factors."),
            ("Send the order id to billing@example.com to start it.", "Please contact us for more information."),
            ("The money is back on the original card within 5-10 business days.", "It may take some time to process."),
            ("After 30 days you can still cancel at renewal.", "See the website for the full policy."))),
        Task("How do I rotate an API key without downtime?", (
            ("Create a second key with `feedback-loop keys create` before revoking the old one.",
             "You can change your key in the settings."),
            ("Deploy the new key to your servers and check that traffic uses it.", "Update your configuration."),
            ("Revoke the old key with `feedback-loop keys revoke <id>`.", "Delete the old key when you are done."),
            ("Revocation takes effect within the key cache time, 60 s by default.", "Changes happen quickly."),
            ("Keep both keys valid during the rollout so no request fails.", "Be careful to avoid problems."))),
    ),
}


@dataclass(frozen=True)
class Cohort:
    name: str
    share: float  # of requests
    feedback_rate: float  # chance a request gets explicit feedback
    mood: float  # shift of the quality users perceive
    effect: float = 1.0  # the planted change's effect in this cohort, as a multiple of Scenario.effect_size


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
    query_types: tuple[str, ...] = tuple(TASKS)
    miscalibrated_query_type: str = "code"  # the evaluator scores it high whatever its quality
    effect_query_type: str = "summarize"
    effect_size: float = 0.15  # added to q for the effect query type after the change
    change_at_day: float = 7.0
    seed: int = 7
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


def _output(rng: random.Random, task: Task, quality: float) -> str:
    """An answer that covers round(5 q) of the task's points and fumbles the rest, so its text
    carries its quality (what a retrained evaluator can learn and the production one misses)."""
    right = round(quality * len(task.points))
    chosen = set(rng.sample(range(len(task.points)), right))
    parts = [good if i in chosen else bad for i, (good, bad) in enumerate(task.points)]
    return task.joiner.join(parts)


def _perfect(task: Task) -> str:
    """The answer a user who edits it ends up with: every point made."""
    return task.joiner.join(good for good, _ in task.points)


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
        task = rng.choice(TASKS[query_type])
        after = at >= s.change_at
        quality = _clip(rng.betavariate(4, 3) + _effect(s, cohort, query_type, after))
        if query_type == s.miscalibrated_query_type:
            overall = _clip(0.82 + rng.gauss(0, 0.05))
        else:  # users say good above about 0.6, the evaluator above 0.7: offset by 0.1
            overall = _clip(quality + 0.1 + rng.gauss(0, 0.08))
        request_id = f"req-{s.seed}-{n:07d}"
        prompt_version = ("v8" if after else "v7") if query_type == s.effect_query_type else "v7"
        record = {
            "request_id": request_id,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "prompt": task.prompt,
            "output": _output(rng, task, quality),
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
        if rng.random() < 0.3:  # what the user did with the answer: used it, fixed it, or threw it away
            roll = rng.random()
            kind = "implicit_usage" if roll < quality else "implicit_edit" if roll < (1 + quality) / 2 else "implicit_discard"
            events.append({"request_id": request_id, "feedback_type": kind,
                           "value": _perfect(task) if kind == "implicit_edit" else True,
                           "timestamp": (at + timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
                           "event_id": f"{request_id}-i", "user_cohort": cohort.name})
        yield record, events


def population_satisfaction(scenario: Scenario | None = None, draws: int = 200_000,
                            days: tuple[float, float] | None = None, query_type: str | None = None) -> float:
    """The expected human score over all requests, feedback or not (Monte Carlo of the same model),
    to check re-weighting against; `days` limits it to part of the scenario, in days from its start,
    `query_type` to the requests of that type."""
    s = scenario or Scenario()
    low, high = days or (0.0, float(s.days))
    rng = random.Random(s.seed + 1)
    total = 0.0
    chosen = query_type
    for _ in range(draws):
        cohort = rng.choices(s.cohorts, [c.share for c in s.cohorts])[0]
        query_type = chosen or rng.choice(s.query_types)
        after = low + rng.random() * (high - low) >= s.change_at_day
        total += _expected_vote(s, rng, cohort, query_type, after)
    return total / draws


def expected_effect(scenario: Scenario | None = None, draws: int = 200_000, population: bool = False) -> float:
    """The change in the mean human score that the planted prompt change causes in its segment:
    over the cohorts' mix of requests with feedback (what the labelled-only comparison measures),
    or with `population` over every request (the cohorts' shares of the traffic)."""
    s = scenario or Scenario()
    rng = random.Random(s.seed + 2)
    weights = [c.share * (1.0 if population else c.feedback_rate) for c in s.cohorts]
    sides = []
    for after in (False, True):
        total = 0.0
        for _ in range(draws):
            cohort = rng.choices(s.cohorts, weights)[0]
            total += _expected_vote(s, rng, cohort, s.effect_query_type, after)
        sides.append(total / draws)
    return sides[1] - sides[0]


def _effect(s: Scenario, cohort: Cohort, query_type: str, after: bool) -> float:
    return s.effect_size * cohort.effect if after and query_type == s.effect_query_type else 0.0


def _expected_vote(s: Scenario, rng: random.Random, cohort: Cohort, query_type: str, after: bool) -> float:
    quality = _clip(rng.betavariate(4, 3) + _effect(s, cohort, query_type, after))
    return _vote_score(_vote(rng, _clip(quality + cohort.mood)))
