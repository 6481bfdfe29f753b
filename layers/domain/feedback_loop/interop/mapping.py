"""Annotations (tools.Annotation) into feedback-loop's contracts: people's judgements become feedback
events (the export contract: docs/CONTRACTS.md), an LLM judge's or code's scores eval records.

People's judgements, by what they hold:
- named after one of our feedback types (what `feedback-loop export` writes): that type, its value
  from the score (a rating r from the score (r - 1) / 4), so an export imports back unchanged;
- a bool: a thumb, up or down;
- a number: by a fixed rule, never by what else the batch holds. A declared scale first (`low,high`:
  `--human-range`, the `x-feedback-loop-human-range` header): s = (v - low) / (high - low), the
  rating round(1 + 4 s). Without one: an integer 1-5 (a JSON integer, OTLP intValue) is that
  rating; a number from 0 to 1 otherwise (0, or a float such as 0.75 or 1.0) is a 0-1 score s, the
  rating round(1 + 4 s) (its human score is s on the quarter steps); a float 2.0-5.0 with no
  fraction is a rating; anything else is skipped (no_value);
- a label: a thumb if it says so (GOOD_LABELS, BAD_LABELS), else a text comment with the label;
- free text (Langfuse's TEXT): a text comment; a corrected answer (Langfuse's CORRECTION): an edit
  (`implicit_edit`) holding the corrected text;
- an explanation (comment, rationale) besides a value: a text comment as well.
Every event is checked against the contract; one that fails (a request id with '/', say) is
skipped with its reason. The event id is the tool's annotation id, so a second import of the same
file stores nothing twice.

An LLM judge's or code's results (a number in 0-1; a bool, or a label that says a verdict, such as
MLflow's built-in judges' "yes"/"no", as 1 or 0: judge_score) become one eval record per request
when `overall` names the score that is the evaluator's overall, timestamped when judged (the
earliest), with the trace's prompt and response where the export holds them. Import them only for
an app that writes no eval log of its own: the analysis would count a request logged twice as two.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from feedback_loop.interop.tools import BAD_LABELS, GOOD_LABELS, Annotation
from feedback_loop.models.evallog import EvalRecord
from feedback_loop.models.feedback import FeedbackEventIn, FeedbackType

_events = TypeAdapter(FeedbackEventIn)
_records = TypeAdapter(EvalRecord)


@dataclass
class Imported:
    feedback: list[dict[str, Any]] = field(default_factory=list)
    eval_records: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _event_id(a: Annotation, suffix: str = "") -> str:
    base = a.annotation_id or hashlib.sha256(repr((a.trace_id, a.span_id, a.name, a.value, a.at)).encode()).hexdigest()
    return re.sub(r"[^A-Za-z0-9._:\-]", "-", f"{a.tool}-{base}")[:128 - len(suffix)] + suffix


def read_scale(text: str) -> tuple[float, float]:
    """A declared scale `low,high` (`1,10`): the overall score's and people's numbers alike; ValueError
    naming what is wrong."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError("must be two numbers, low,high (for example 1,5)") from None
    if not low < high or not all(abs(x) < 1e12 for x in (low, high)):
        raise ValueError("low must be below high")
    return low, high


def rating(value: int | float, scale: tuple[float, float] | None = None) -> int | None:
    """The 1-5 rating a person's number stands for (module docstring: the rule), or None."""
    if scale is not None:
        low, high = scale
        return round(1 + 4 * (value - low) / (high - low)) if low <= value <= high else None
    if isinstance(value, int):
        return value if 1 <= value <= 5 else 1 if value == 0 else None
    if 0 <= value <= 1:
        return round(1 + 4 * value)
    return int(value) if value.is_integer() and 2 <= value <= 5 else None


def judge_score(value: Any) -> float | None:
    """A judge's or a code check's result as a 0-1 score: a number in 0-1; a bool, 1 or 0; a label
    that says a verdict (yes/no, pass/fail, correct/incorrect, ...: GOOD_LABELS, BAD_LABELS), 1 or 0.
    None for anything else (another label, a number outside 0-1)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if 0 <= value <= 1 else None
    if isinstance(value, str):
        label = value.strip().lower()
        return 1.0 if label in GOOD_LABELS else 0.0 if label in BAD_LABELS else None
    return None


def _judgement(a: Annotation, scale: tuple[float, float] | None) -> tuple[str, Any] | None:
    """(feedback type, value) of a person's judgement, or None."""
    v = a.value
    if a.kind == "correction":  # a person's corrected answer: what an edit of the output is
        return (FeedbackType.EDIT, v) if isinstance(v, str) else None
    if a.kind == "text":
        return (FeedbackType.COMMENT, v) if isinstance(v, str) else None
    if a.name in set(FeedbackType):  # our own export, back
        if a.name in (FeedbackType.THUMBS_UP, FeedbackType.THUMBS_DOWN, FeedbackType.USAGE, FeedbackType.DISCARD):
            return a.name, True
        if a.name == FeedbackType.RATING and isinstance(v, (int, float)) and not isinstance(v, bool):
            found = rating(v, scale)
            return (a.name, found) if found is not None else None
        if a.name in (FeedbackType.COMMENT, FeedbackType.EDIT):
            return (a.name, a.explanation) if a.explanation is not None else None
    if isinstance(v, bool):
        return (FeedbackType.THUMBS_UP if v else FeedbackType.THUMBS_DOWN), True
    if isinstance(v, (int, float)):
        found = rating(v, scale)
        return (FeedbackType.RATING, found) if found is not None else None
    if isinstance(v, str):
        label = v.strip().lower()
        if label in GOOD_LABELS or label in BAD_LABELS:
            return (FeedbackType.THUMBS_UP if label in GOOD_LABELS else FeedbackType.THUMBS_DOWN), True
        return FeedbackType.COMMENT, v
    return None


def _checked(event: dict[str, Any], imported: Imported) -> None:
    try:
        _events.validate_python(event)
    except ValidationError as error:
        where = ".".join(str(p) for p in error.errors()[0]["loc"][1:2]) or "event"
        imported.skipped[f"invalid_{where}"] += 1
        return
    imported.feedback.append(event)


def convert(annotations: list[Annotation], request_id: str = "trace", overall: str | None = None,
            human_range: tuple[float, float] | None = None) -> Imported:
    """Feedback events from people's judgements, eval records from the judges' (module docstring).
    `request_id`: which id the app's requests are known by, `trace` or `span`; `human_range`: the
    declared scale of people's numeric judgements."""
    imported = Imported()
    scores: dict[str, dict[str, Any]] = defaultdict(lambda: {"scores": {}, "at": None, "tool": None})
    for a in annotations:
        request = a.trace_id if request_id == "trace" else a.span_id
        if not request:
            imported.skipped[f"no_{request_id}_id"] += 1
            continue
        if a.at is None:
            imported.skipped["no_time"] += 1
            continue
        if not a.human:
            # a judge's number in 0-1 first (Phoenix's score beside its label, Langfuse's category value),
            # else its value (a number, a bool, a label that says a verdict)
            v = float(a.number) if a.number is not None and 0 <= a.number <= 1 else judge_score(a.value)
            if v is None:
                imported.skipped["judge_label_not_a_verdict" if isinstance(a.value, str)
                                 else "judge_score_not_in_0_1"] += 1
                continue
            entry = scores[request]
            entry["scores"][a.name] = v
            entry["tool"] = a.tool
            entry["at"] = a.at if entry["at"] is None else min(entry["at"], a.at)
            for name in ("prompt", "output"):  # the trace's texts, where the export holds them
                if getattr(a, name) not in (None, "") and name not in entry:
                    entry[name] = getattr(a, name)
            continue
        base = {"request_id": request, "timestamp": a.at.isoformat().replace("+00:00", "Z"),
                "metadata": {"imported_from": a.tool, "name": a.name}}
        if a.event_id:  # our own export, back: the event as it was sent (its own metadata, if it had any)
            own = (a.metadata or {}).get("metadata")
            if isinstance(own, str):  # as JSON text, where a tool keeps text values only (MLflow)
                try:
                    own = json.loads(own)
                except ValueError:
                    own = None
            base.pop("metadata")
            if isinstance(own, dict) and own:
                base["metadata"] = own
        if a.user_id:
            base["user_id"] = a.user_id
        if (a.metadata or {}).get("user_cohort"):  # our own export carries it
            base["user_cohort"] = a.metadata["user_cohort"]
        judgement = _judgement(a, human_range)
        if judgement is None and not a.explanation:
            imported.skipped["no_value"] += 1
        elif judgement is not None:
            kind, value = judgement
            _checked({**base, "feedback_type": str(kind), "value": value, "event_id": a.event_id or _event_id(a)},
                     imported)
        if a.explanation and (judgement is None or judgement[1] != a.explanation):  # not the value itself
            # beside a value, a second event; alone (a note), the one event, with the id it always had
            _checked({**base, "feedback_type": str(FeedbackType.COMMENT), "value": a.explanation,
                      "event_id": (a.event_id + "-comment" if a.event_id else _event_id(a, "-comment"))}, imported)
    for request, entry in scores.items():
        if overall is None or overall not in entry["scores"]:
            imported.skipped["judge_scores_without_overall"] += 1
            continue
        named = entry["scores"]
        record = {"request_id": request, "timestamp": entry["at"].isoformat().replace("+00:00", "Z"),
                  **{name: entry[name] for name in ("prompt", "output") if name in entry},
                  "eval_scores": {"overall": named[overall], **{k: v for k, v in named.items() if k != overall}},
                  "metadata": {"imported_from": entry["tool"]}}
        try:
            _records.validate_python(record)
        except ValidationError:
            imported.skipped["invalid_eval_record"] += 1
            continue
        imported.eval_records.append(record)
    return imported
