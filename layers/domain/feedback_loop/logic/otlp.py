"""OpenTelemetry into eval records and feedback (interop/otlp.py reads the exports).

A span and its evaluation results arrive apart: an SDK exports spans and log records through two
exporters, an evaluator scores a span minutes or hours after it ended, and either may come first.
So each (project, trace, span) that can be a request has one table item that both sides write into
(`FeedbackTable.merge`: one UpdateItem that returns the whole item): the span's record fields from
the traces, each evaluation's score (`score:<name>`) from the span's own events, the logs or
annotations. The write that leaves the item holding both the span and the evaluation the mapping
names `overall` sends the record to the eval-log stream (logic/evals.record_evals: once per
request id) and marks the item `emitted`; scores arriving after that are not added (counted as
`late_scores`). Items expire after PENDING_DAYS (the table's TTL), whether completed or not.
A span that carries its own `overall` evaluation and finds no item (nothing about it came before)
is sent at once without one (a consistent BatchGetItem per 100 spans is its only table cost): an
evaluation result of it that comes later, or at that very moment from another export, is not
added, as if late.

People's OpenInference annotations (HUMAN) become feedback events (logic/ingest.record_batch) with
ids derived from the span and the annotation, so a resent export stores nothing twice.

Nothing is acknowledged that was not kept: when a write or the stream fails, the outcome says
`retry` and the API answers 503, which OTLP exporters resend; every step is idempotent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from feedback_loop.calibration.curves import calibrated_record
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.interop import otlp
from feedback_loop.interop.mapping import convert
from feedback_loop.interop.tools import Annotation
from feedback_loop.logic import evals, ingest
from feedback_loop.logic.calibration import InService
from feedback_loop.logic.ingest import IngestPolicy

PENDING_DAYS = 14
SCORE = "score:"
EMITTED = "emitted"
DIRECT = "_direct"  # a span sent with its own scores, without an item (never stored)
MAX_RECORDS_A_CALL = 500


@dataclass
class Outcome:
    """What one export gave: spans kept, records sent to the eval log, feedback events stored, and
    what was refused (by reason: the export's partial success)."""

    spans: int = 0
    evaluations: int = 0
    records: int = 0
    feedback: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    passed_over: Counter[str] = field(default_factory=Counter)  # not refused, not used: said, not counted
    retry: bool = False

    def message(self) -> str:
        parts = [f"{n} {reason}" for reason, n in sorted(self.rejected.items())]
        parts += [f"{n} {reason}" for reason, n in sorted(self.passed_over.items())]
        return "; ".join(parts)

    def __add__(self, other: "Outcome") -> "Outcome":
        return Outcome(self.spans + other.spans, self.evaluations + other.evaluations, self.records + other.records,
                       self.feedback + other.feedback, self.rejected + other.rejected,
                       self.passed_over + other.passed_over, self.retry or other.retry)

    def counts(self) -> dict[str, Any]:
        """The figures, for a log line."""
        return {"spans": self.spans, "evaluations": self.evaluations, "records": self.records,
                "feedback": self.feedback, "rejected": dict(self.rejected), "passed_over": dict(self.passed_over)}


def pair_key(project: str, trace_id: str, span_id: str) -> tuple[str, str]:
    return f"OTEL#{project}#{trace_id}#{span_id}", "OTEL"


def trace_models_key(project: str, trace_id: str) -> tuple[str, str]:
    """The item that keeps the models of a trace's child LLM spans (one attribute `model:<name>` each)."""
    return pair_key(project, trace_id, "models")


MODEL = "model:"


def _child_model(span: otlp.Span) -> str | None:
    """The model of an OpenInference LLM span or a GenAI span that has a parent (a child of the
    request's span), else None."""
    kind = str(span.attributes.get("openinference.span.kind", "")).upper()
    genai = any(key.startswith("gen_ai.") for key in span.attributes)
    if not span.parent_span_id or not (kind == "LLM" or genai):
        return None
    model = otlp.first_attribute(span.attributes, otlp.METADATA_KEYS["model"])
    return str(model) if model is not None else None


def _with_child_models(table: FeedbackTable, project: str, spans: Sequence[otlp.Span],
                       bases: list[dict[str, Any]], outcome: Outcome, now: datetime) -> None:
    """A request span without a model of its own (an OpenInference CHAIN or AGENT span) takes the
    model of its trace's child LLM spans: those of this export, and those an earlier export kept in
    the trace's item (a child ends, and is exported, before its parent). One model: `model`, and
    `model_from` "child_llm_span"; several: `models` (sorted, comma-separated), no `model` guessed.
    A child exported after its parent's record was sent is not added."""
    found: dict[str, set[str]] = {}
    for span in spans:
        model = _child_model(span)
        if model is not None:
            found.setdefault(span.trace_id, set()).add(model)
    if found:  # kept for the parents of later exports
        written = table.merge_many([(*trace_models_key(project, trace), {
            **{MODEL + model: True for model in sorted(models)}, "entity": "otel", "expires_at": _expires(now)})
            for trace, models in found.items()])
        if any(item is None for item in written):
            outcome.retry = True
    needing = {base["metadata"]["trace_id"] for base in bases if "model" not in base["metadata"]}
    if not needing:
        return
    stored = table.get_many([trace_models_key(project, trace) for trace in sorted(needing - set(found))])
    for trace in needing - set(found):
        item = stored.get(trace_models_key(project, trace))
        if item:
            found[trace] = {key[len(MODEL):] for key in item if key.startswith(MODEL)}
    for base in bases:
        metadata = base["metadata"]
        models = sorted(found.get(metadata["trace_id"], ()))
        if "model" in metadata or not models:
            continue
        if len(models) == 1:
            metadata["model"], metadata["model_from"] = models[0], "child_llm_span"
        else:
            metadata["models"] = ",".join(models)


def _expires(now: datetime) -> int:
    return int((now + timedelta(days=PENDING_DAYS)).timestamp())


def _scores(item: dict[str, Any]) -> dict[str, float]:
    return {key[len(SCORE):]: float(value) for key, value in item.items() if key.startswith(SCORE)}


def _score_values(evaluations: Sequence[otlp.Evaluation], outcome: Outcome) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for evaluation in evaluations:
        if evaluation.score is None:
            outcome.passed_over["evaluations_without_a_numeric_score"] += 1
            continue
        values[SCORE + evaluation.name] = Decimal(repr(evaluation.score))
        outcome.evaluations += 1
    return values


def _merge(table: FeedbackTable, project: str, updates: list[tuple[str, str, dict[str, Any]]],
           outcome: Outcome, now: datetime) -> list[dict[str, Any]]:
    """Each (trace, span, values) merged into its item; the items after."""
    calls = [(*pair_key(project, trace, span), {**values, "entity": "otel", "expires_at": _expires(now)})
             for trace, span, values in updates]
    merged = table.merge_many(calls)
    if any(item is None for item in merged):
        outcome.retry = True
    return [item for item in merged if item is not None]


def _deliver(table: FeedbackTable, stream: evals.EvalStream, project: str, items: list[dict[str, Any]],
             mapping: otlp.Mapping, policy: IngestPolicy, outcome: Outcome, now: datetime,
             calibrator: InService | None = None) -> None:
    """The records of the items that hold their span and their overall score, once; with the
    calibrator in service, its figures beside the raw score (calibration.curves.calibrated_record)."""
    ready = []
    for item in items:
        scores = _scores(item)
        if item.get(EMITTED):
            if set(scores) - set(item.get("emitted_scores", [])):
                outcome.passed_over["late_scores"] += 1
            continue
        if "span" in item and mapping.overall in scores:
            record = otlp.scored_record(json.loads(item["span"]), scores, mapping)
            if calibrator is not None:
                record = calibrated_record(record, calibrator.map, calibrator.id) or record
            ready.append((item, record))
    for start in range(0, len(ready), MAX_RECORDS_A_CALL):
        chunk = ready[start:start + MAX_RECORDS_A_CALL]
        result = evals.record_evals(table, stream, project, [record for _, record in chunk], policy, now)
        done = []
        for (item, record), answer in zip(chunk, result.results):
            if answer.status == 503:
                outcome.retry = True
                continue
            if answer.status == 201:
                outcome.records += 1
            elif answer.status != 200:
                fields = ",".join(sorted({e.field for e in answer.errors})) or "record"
                outcome.rejected[f"record_refused_{answer.status}:{fields}"] += 1
            if not item.get(DIRECT):
                done.append((item["pk"], item["sk"], {EMITTED: record["request_id"],
                                                     "emitted_scores": sorted(_scores(item))}))
        if any(marked is None for marked in table.merge_many(done)):
            outcome.retry = True  # delivered; a resend finds the record accepted and marks it


def receive_spans(table: FeedbackTable, stream: evals.EvalStream, project: str, spans: Sequence[otlp.Span],
                  mapping: otlp.Mapping, policy: IngestPolicy, now: datetime | None = None,
                  calibrator: InService | None = None) -> Outcome:
    """Spans (with their own evaluations and annotations) into pending items, records and feedback."""
    now = now or datetime.now(timezone.utc)
    outcome = Outcome()
    updates = []
    people = []
    requests = []
    for span in spans:
        if not otlp.can_be_request(span):
            continue
        base = otlp.record_base(span, mapping)
        if base is None:
            outcome.passed_over[f"spans_without_{mapping.request_id}"] += 1
            continue
        requests.append((span, base))
    _with_child_models(table, project, spans, [base for _, base in requests], outcome, now)
    for span, base in requests:
        updates.append((span.trace_id, span.span_id,
                        {"span": json.dumps(base, ensure_ascii=False), **_score_values(span.evaluations, outcome)}))
        people += [_with_request_id(a, base["request_id"]) for a in span.annotations]
        outcome.spans += 1
    # A span that brings its overall score and has no item yet (no evaluation came before it) is
    # sent at once, without an item: one read per 100 spans instead of two writes each.
    keys = [pair_key(project, trace, span) for trace, span, _ in updates]
    scored = [SCORE + mapping.overall in values for _, _, values in updates]
    waiting = table.get_many([key for key, has in zip(keys, scored) if has])
    direct, paired = [], []
    for key, update, has in zip(keys, updates, scored):
        if has and key not in waiting:
            direct.append({"pk": key[0], "sk": key[1], DIRECT: True, **update[2]})
        else:
            paired.append(update)
    _deliver(table, stream, project, direct + _merge(table, project, paired, outcome, now), mapping, policy,
             outcome, now, calibrator)
    if people:
        _feedback(table, project, people, mapping, policy, outcome, now)
    return outcome


def receive_evaluations(table: FeedbackTable, stream: evals.EvalStream, project: str,
                        evaluations: Sequence[otlp.Evaluation], mapping: otlp.Mapping, policy: IngestPolicy,
                        now: datetime | None = None, calibrator: InService | None = None) -> Outcome:
    """Evaluation results (from log records) into their spans' items, and the records they complete."""
    now = now or datetime.now(timezone.utc)
    outcome = Outcome()
    by_span: dict[tuple[str, str], list[otlp.Evaluation]] = {}
    for evaluation in evaluations:
        by_span.setdefault((evaluation.trace_id, evaluation.span_id), []).append(evaluation)
    updates = [(trace, span, values) for (trace, span), found in by_span.items()
               if (values := _score_values(found, outcome))]
    _deliver(table, stream, project, _merge(table, project, updates, outcome, now), mapping, policy, outcome, now,
             calibrator)
    return outcome


def _with_request_id(annotation: Annotation, request_id: str) -> Annotation:
    """The annotation about the span's request id (the importers' mapping reads it as the trace id)."""
    return replace(annotation, trace_id=request_id)


def _feedback(table: FeedbackTable, project: str, annotations: list[Annotation], mapping: otlp.Mapping,
              policy: IngestPolicy, outcome: Outcome, now: datetime) -> None:
    imported = convert(annotations, request_id="trace", human_range=mapping.human_range)
    for reason, n in imported.skipped.items():
        outcome.rejected[f"annotation_{reason}"] += n
    for start in range(0, len(imported.feedback), 500):
        result = ingest.record_batch(table, project, imported.feedback[start:start + 500], policy, now)
        for item in result.results:
            if item.status == 503:
                outcome.retry = True
            elif item.status == 201:
                outcome.feedback += 1
            elif item.status != 200:
                outcome.rejected[f"feedback_refused_{item.status}"] += 1
