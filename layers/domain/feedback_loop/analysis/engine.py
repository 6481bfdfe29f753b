"""The weekly analysis: one pass over the eval logs, joined to the feedback index, then statistics.

Per eval record the pass does a dictionary look-up and a few counter updates; arrays are kept only
for requests with a human score, so memory grows with the feedback, not with the logs.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from feedback_loop import scoring
from feedback_loop.analysis import stats
from feedback_loop.analysis.evallogs import EvalRecord
from feedback_loop.analysis.feedback import FeedbackIndex, RequestFeedback
from feedback_loop.models.changes import Change

SCHEMA_VERSION = 1
UNKNOWN = "unknown"


@dataclass(frozen=True)
class AnalysisSettings:
    threshold: float = 0.7  # evaluator verdict: good if overall > threshold
    segment_fields: tuple[str, ...] = ("user_cohort", "query_type", "prompt_version", "model")
    min_segment_n: int = 30
    target_feedback_rate: float = 0.05
    trim_multiple: float = 20.0
    impact_window: timedelta = timedelta(days=7)
    alpha: float = 0.05
    confidence: float = 0.95
    validation_share: float = 0.2
    calibration_bins: int = 10


def field_value(raw: dict[str, Any], name: str) -> str | None:
    """An eval-log field by name: `metadata.x` or a top-level field, else metadata's."""
    metadata = raw.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if name.startswith("metadata."):
        value = metadata.get(name.removeprefix("metadata."))
    elif name in raw and not isinstance(raw[name], (dict, list)):
        value = raw[name]
    else:
        value = metadata.get(name)
    return None if value is None or isinstance(value, (dict, list)) else str(value)


def cohort_of(raw: dict[str, Any], feedback: RequestFeedback | None) -> str:
    """The eval log's metadata.user_cohort, else the feedback's user_cohort, else unknown."""
    return field_value(raw, "metadata.user_cohort") or (feedback.user_cohort if feedback else None) or UNKNOWN


def split_of(request_id: str, validation_share: float) -> str:
    """Stable train/validation split by a hash of the request_id: the same request always lands
    on the same side, whichever week it is read in."""
    bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return "validation" if bucket < validation_share else "train"


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class _Side:
    """Sufficient statistics of one side of a comparison."""

    requests: int = 0
    with_feedback: int = 0
    overall_n: int = 0
    overall_sum: float = 0.0
    overall_sq: float = 0.0
    human: list[float] = field(default_factory=list)
    thumbs_up: int = 0
    thumbs: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, record: EvalRecord, feedback: RequestFeedback | None) -> None:
        self.requests += 1
        self.overall_n += 1
        self.overall_sum += record.overall
        self.overall_sq += record.overall * record.overall
        self.first = record.at if self.first is None else min(self.first, record.at)
        self.last = record.at if self.last is None else max(self.last, record.at)
        if feedback is not None:
            self.with_feedback += feedback.explicit > 0
            self.thumbs_up += feedback.thumbs_up
            self.thumbs += feedback.thumbs_up + feedback.thumbs_down
            score = feedback.human().value
            if score is not None:
                self.human.append(score)

    def overall_stats(self) -> tuple[int, float, float]:
        n = self.overall_n
        if n == 0:
            return 0, math.nan, math.nan
        mean = self.overall_sum / n
        variance = max(0.0, (self.overall_sq - n * mean * mean) / (n - 1)) if n > 1 else math.nan
        return n, mean, variance

    def summary(self, n: int, mean: float | None) -> dict[str, Any]:
        return {"n": n, "mean": mean, "start": _iso(self.first), "end": _iso(self.last)}


@dataclass
class _ChangeSides:
    """A change's two sides, with its time range and segment test prepared once."""

    change: Change
    window: tuple[float, float]
    span: float
    control: _Side = field(default_factory=_Side)
    treatment: _Side = field(default_factory=_Side)

    def __post_init__(self) -> None:
        effective = self.change.effective_at.timestamp()
        self.effective = effective
        self.low, self.high = ((max(effective, self.window[0]), self.window[1]) if self.change.variant_field
                               else (effective - self.span, effective + self.span))
        self.segment = list((self.change.segment or {}).items())

    def side_for(self, record: EvalRecord) -> _Side | None:
        at = record.at
        if not self.low <= at < self.high:  # the cheap test first: most records are outside
            return None
        for key, expected in self.segment:
            if field_value(record.raw, key) != expected:
                return None
        change = self.change
        if change.variant_field:
            arm = field_value(record.raw, change.variant_field)
            return self.control if arm == change.control else self.treatment if arm == change.treatment else None
        return self.control if at < self.effective else self.treatment


@dataclass
class Analysis:
    report: dict[str, Any]
    disagreements: list[dict[str, Any]]
    labelled: list[dict[str, Any]]


def read_range(since: datetime, until: datetime, changes: list[Change], settings: AnalysisSettings
               ) -> tuple[datetime, list[Change]]:
    """Changes measured in this report, and from when eval logs must be read for them.

    A before/after change is measured while its after-window overlaps the report's window (so a
    change of late last week is measured again with a full week after it); an A/B change while it
    has started by the end of the window.
    """
    measured = sorted((c for c in changes
                       if c.effective_at < until and (c.variant_field or c.effective_at + settings.impact_window > since)),
                      key=lambda c: (c.effective_at, c.name))  # the report's order never depends on the input's
    starts = [c.effective_at - settings.impact_window for c in measured if not c.variant_field]
    return min([since, *starts]), measured


def analyse(project: str, records: Iterable[EvalRecord], feedback: FeedbackIndex, changes: list[Change],
            since: datetime, until: datetime, settings: AnalysisSettings | None = None,
            skipped: Counter[str] | None = None, generated_at: datetime | None = None) -> Analysis:
    settings = settings or AnalysisSettings()
    skipped = skipped if skipped is not None else Counter()
    window = (since.timestamp(), until.timestamp())
    span = settings.impact_window.total_seconds()
    sides = [_ChangeSides(c, window, span) for c in changes]
    fields = settings.segment_fields

    in_window = read = 0
    requests_with_feedback = 0
    cohort_requests: Counter[str] = Counter()
    cohort_feedback: Counter[str] = Counter()
    cohort_contradictory: Counter[str] = Counter()
    matched: set[str] = set()
    rows: list[tuple[Any, ...]] = []  # requests with a human score in the window

    for record in records:
        read += 1
        request_feedback = feedback.requests.get(record.request_id)
        if request_feedback is not None:
            if record.request_id in matched:
                skipped["duplicate_request_id"] += 1
                continue
            matched.add(record.request_id)
        for change_sides in sides:
            side = change_sides.side_for(record)
            if side is not None:
                side.add(record, request_feedback)
        if not window[0] <= record.at < window[1]:
            continue
        in_window += 1
        metadata = record.raw.get("metadata")
        cohort = metadata.get("user_cohort") if type(metadata) is dict else None
        if type(cohort) is not str or not cohort:  # the rare path: the documented fallbacks
            cohort = cohort_of(record.raw, request_feedback)
        cohort_requests[cohort] += 1
        if request_feedback is None:
            continue
        requests_with_feedback += 1
        if request_feedback.explicit:
            cohort_feedback[cohort] += 1
        if request_feedback.contradictory:
            cohort_contradictory[cohort] += 1
        human = request_feedback.human()
        if human.value is None:
            continue
        segments = tuple(cohort if f == "user_cohort" else (field_value(record.raw, f) or UNKNOWN) for f in fields)
        output = record.raw.get("output")
        implicit = request_feedback.implicit(output if isinstance(output, str) else None)
        rows.append((record, human.value, human.n_users, cohort, segments, implicit.value))

    orphans = [r for r in feedback.requests if r not in matched]
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "project": project,
        "generated_at": _iso((generated_at or datetime.now(timezone.utc)).timestamp()),
        "window": {"since": _iso(window[0]), "until": _iso(window[1])},
        "settings": {"threshold": settings.threshold, "segment_fields": list(fields),
                     "min_segment_n": settings.min_segment_n, "target_feedback_rate": settings.target_feedback_rate,
                     "trim_multiple": settings.trim_multiple, "impact_window_days": span / 86400,
                     "alpha": settings.alpha, "confidence": settings.confidence},
        "counts": {
            "eval_records": in_window,
            "eval_records_read": read,
            "feedback_events": feedback.events,
            "requests_with_feedback": requests_with_feedback,
            "requests_with_human_score": len(rows),
            "orphan_feedback_requests": len(orphans),
            "orphan_feedback_events": sum(feedback.requests[r].events for r in orphans),
            "skipped_lines": sum(v for k, v in skipped.items() if k != "outside_window")
            + sum(feedback.skipped.values()),
            "skipped_by_reason": dict(sorted((skipped + feedback.skipped).items())),
        },
    }
    overall = np.array([r[0].overall for r in rows], float)
    human = np.array([r[1] for r in rows], float)
    cohorts = [r[3] for r in rows]
    segments = [r[4] for r in rows]
    good = human >= scoring.GOOD_AT
    binary = good | (human <= scoring.BAD_AT)
    verdict_good = overall > settings.threshold

    report["correlation"] = _correlations(overall, human, segments, fields, settings)
    report["agreement"] = _agreement(overall[binary], good[binary], verdict_good[binary], settings)
    report["miscalibration"] = _miscalibration(verdict_good, good, binary, segments, fields, settings)
    weights_by_cohort, cohort_report = _cohorts(cohort_requests, cohort_feedback, cohort_contradictory, cohorts,
                                                human, settings)
    report["cohorts"] = cohort_report
    weights = np.array([weights_by_cohort.get(c, 0.0) for c in cohorts], float)
    report["weighting"] = _weighting(overall, human, weights, settings)
    report["impact"], report["regressions"] = _impact(sides, settings)

    disagreements, labelled = [], []
    for i, (record, score, n_users, cohort, segment_values, implicit) in enumerate(rows):
        label = scoring.human_label(score)
        entry = {
            "request_id": record.request_id, "timestamp": _iso(record.at), "prompt": record.raw.get("prompt"),
            "output": record.raw.get("output"), "overall": record.overall,
            "verdict": "good" if verdict_good[i] else "bad", "human_score": score, "human_label": label,
            "n_users": n_users, "implicit_score": implicit, "cohort": cohort,
            "segments": dict(zip(fields, segment_values)),
        }
        if binary[i] and bool(verdict_good[i]) != bool(good[i]):
            disagreements.append({**entry, "direction": "evaluator_too_high" if verdict_good[i] else "evaluator_too_low"})
        labelled.append({**entry, "weight": float(weights[i]), "split": split_of(record.request_id,
                                                                                 settings.validation_share)})
    report["datasets"] = {"disagreements": len(disagreements), "labelled": len(labelled),
                          "labelled_binary": int(binary.sum()),
                          "validation": sum(e["split"] == "validation" for e in labelled)}
    return Analysis(report, disagreements, labelled)


def _correlation_block(x: np.ndarray, y: np.ndarray, confidence: float) -> dict[str, Any]:
    return {"n": len(x), "pearson": asdict(stats.pearson(x, y, confidence)),
            "spearman": asdict(stats.spearman(x, y, confidence)),
            "kendall": asdict(stats.kendall_tau_b(x, y, confidence))}


def _groups(segments: list[tuple[str, ...]], position: int) -> dict[str, np.ndarray]:
    indices: dict[str, list[int]] = defaultdict(list)
    for i, values in enumerate(segments):
        indices[values[position]].append(i)
    return {value: np.array(members, int) for value, members in sorted(indices.items())}


def _correlations(overall: np.ndarray, human: np.ndarray, segments: list[tuple[str, ...]],
                  fields: tuple[str, ...], settings: AnalysisSettings) -> dict[str, Any]:
    by_segment: dict[str, dict[str, Any]] = {}
    for position, name in enumerate(fields):
        by_segment[name] = {}
        for value, members in _groups(segments, position).items():
            if len(members) < settings.min_segment_n:
                by_segment[name][value] = {"n": len(members), "insufficient": True}
            else:
                by_segment[name][value] = {**_correlation_block(overall[members], human[members], settings.confidence),
                                           "insufficient": False}
    return {"overall": _correlation_block(overall, human, settings.confidence), "by_segment": by_segment,
            "x": "eval_scores.overall", "y": "human_score"}


def _agreement(overall: np.ndarray, good: np.ndarray, verdict_good: np.ndarray, settings: AnalysisSettings
               ) -> dict[str, Any]:
    calibration = stats.calibration(overall, good, settings.calibration_bins)
    return {"n": len(overall), "n_good": int(good.sum()), "n_bad": int((~good).sum()),
            "threshold": settings.threshold,
            "auroc": asdict(stats.auroc(overall, good, settings.confidence)),
            "cohen_kappa": asdict(stats.cohen_kappa(verdict_good, good, settings.confidence)),
            "ece": calibration.ece, "brier": calibration.brier, "binning": calibration.binning,
            "reliability_bins": [asdict(b) for b in calibration.bins]}


def _miscalibration(verdict_good: np.ndarray, good: np.ndarray, binary: np.ndarray,
                    segments: list[tuple[str, ...]], fields: tuple[str, ...], settings: AnalysisSettings
                    ) -> dict[str, Any]:
    disagree = binary & (verdict_good != good)
    n, k = int(binary.sum()), int(disagree.sum())
    overall_rate = stats.wilson(k, n, settings.confidence)
    by_segment: dict[str, dict[str, Any]] = {}
    tests: list[tuple[str, str]] = []
    p_values: list[float | None] = []
    for position, name in enumerate(fields):
        by_segment[name] = {}
        for value, members in _groups(segments, position).items():
            members = members[binary[members]]
            n_s, k_s = len(members), int(disagree[members].sum())
            entry: dict[str, Any] = {"n": n_s, "disagreements": k_s}
            if n_s < settings.min_segment_n:
                entry["insufficient"] = True
            else:
                rate = stats.wilson(k_s, n_s, settings.confidence)
                rest = stats.two_proportions(k - k_s, n - n_s, k_s, n_s, settings.confidence, alternative="greater")
                entry.update({"insufficient": False, "rate": rate.rate, "rate_ci": rate.ci,
                              "rest_rate": rest.mean_control, "diff_vs_rest": rest.diff,
                              "diff_vs_rest_ci": rest.diff_ci, "p_value": rest.p_value})
                tests.append((name, value))
                p_values.append(rest.p_value)
            by_segment[name][value] = entry
    flagged = []
    for (name, value), adjusted in zip(tests, stats.benjamini_hochberg(p_values)):
        entry = by_segment[name][value]
        entry["p_value_adjusted"] = adjusted
        entry["flagged"] = adjusted is not None and adjusted < settings.alpha
        if entry["flagged"]:
            flagged.append({"field": name, "value": value, "n": entry["n"], "rate": entry["rate"],
                            "rate_ci": entry["rate_ci"], "rest_rate": entry["rest_rate"],
                            "p_value_adjusted": adjusted})
    too_high = int((binary & verdict_good & ~good).sum())
    return {"threshold": settings.threshold, "n": n, "disagreements": k, "rate": overall_rate.rate,
            "rate_ci": overall_rate.ci, "evaluator_too_high": too_high, "evaluator_too_low": k - too_high,
            "test": "one-sided two-proportion z-test of each segment against the rest, Benjamini-Hochberg",
            "by_segment": by_segment, "flagged_segments": sorted(flagged, key=lambda f: f["p_value_adjusted"])}


def _cohorts(requests: Counter[str], with_feedback: Counter[str], contradictory: Counter[str], cohorts: list[str],
             human: np.ndarray, settings: AnalysisSettings) -> tuple[dict[str, float], dict[str, Any]]:
    labelled = Counter(cohorts)
    weights = stats.inverse_propensity_weights(dict(requests), dict(labelled), settings.trim_multiple)
    report = {}
    for cohort in sorted(requests):
        rate = stats.wilson(with_feedback[cohort], requests[cohort], settings.confidence)
        scores = human[[i for i, c in enumerate(cohorts) if c == cohort]]
        report[cohort] = {
            "requests": requests[cohort], "with_feedback": with_feedback[cohort], "rate": rate.rate,
            "rate_ci": rate.ci, "below_target": rate.rate is not None and rate.rate < settings.target_feedback_rate,
            "with_human_score": int(labelled[cohort]), "weight": weights.get(cohort),
            "satisfaction": float(scores.mean()) if len(scores) else None,
            "contradictory": contradictory[cohort],
        }
    return weights, report


def _weighting(overall: np.ndarray, human: np.ndarray, weights: np.ndarray, settings: AnalysisSettings
               ) -> dict[str, Any]:
    if len(human) == 0:
        return {"n": 0, "kish_ess": 0.0, "unweighted_satisfaction": None, "weighted_satisfaction": None,
                "trim_multiple": settings.trim_multiple, "weighted_correlation": None}
    return {"n": len(human), "kish_ess": stats.kish_ess(weights), "trim_multiple": settings.trim_multiple,
            "unweighted_satisfaction": float(human.mean()),
            "weighted_satisfaction": float(np.average(human, weights=weights)) if weights.sum() > 0 else None,
            "weighted_correlation": asdict(stats.weighted_pearson(overall, human, weights, settings.confidence)),
            "method": "inverse propensity of having a human score, per cohort, trimmed"}


METRICS = ("evaluator_overall", "human_score", "thumbs_up_share", "feedback_rate")


def _impact(sides: list[_ChangeSides], settings: AnalysisSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries: list[dict[str, Any]] = []
    for change_sides in sides:
        change, c, t = change_sides.change, change_sides.control, change_sides.treatment
        ab = bool(change.variant_field)
        names = ("control", "treatment") if ab else ("before", "after")
        srm = asdict(stats.sample_ratio_mismatch(c.requests, t.requests)) if ab else None
        for metric in METRICS:
            if metric == "evaluator_overall":
                (n_c, m_c, v_c), (n_t, m_t, v_t) = c.overall_stats(), t.overall_stats()
                result = stats.welch(n_c, m_c, v_c, n_t, m_t, v_t, settings.confidence)
            elif metric == "human_score":
                n_c, m_c, v_c = stats.mean_and_variance(np.array(c.human))
                n_t, m_t, v_t = stats.mean_and_variance(np.array(t.human))
                result = stats.welch(n_c, m_c, v_c, n_t, m_t, v_t, settings.confidence)
            elif metric == "thumbs_up_share":
                result = stats.two_proportions(c.thumbs_up, c.thumbs, t.thumbs_up, t.thumbs, settings.confidence)
            else:
                result = stats.two_proportions(c.with_feedback, c.requests, t.with_feedback, t.requests,
                                               settings.confidence)
            entry = {
                "change": change.name, "metric": metric, "design": "ab" if ab else "before_after",
                "segment": change.segment,
                names[0]: c.summary(result.n_control, _mean(result.mean_control)),
                names[1]: t.summary(result.n_treatment, _mean(result.mean_treatment)),
                "diff": result.diff, "diff_ci": result.diff_ci, "relative": result.relative,
                "relative_ci": result.relative_ci, "p_value": result.p_value, "test": result.test,
                "effect_size": result.effect_size, "effect_size_name": result.effect_size_name,
                "note": result.note,
            }
            if srm is not None:
                entry["sample_ratio"] = srm
            entries.append(entry)
    for entry, adjusted in zip(entries, stats.benjamini_hochberg([e["p_value"] for e in entries])):
        entry["p_value_adjusted"] = adjusted
        entry["p_value_adjustment"] = "benjamini_hochberg over every impact test in the report"
        entry["significant"] = adjusted is not None and adjusted < settings.alpha
    regressions = [{"change": e["change"], "metric": e["metric"], "diff": e["diff"], "diff_ci": e["diff_ci"],
                    "p_value_adjusted": e["p_value_adjusted"]}
                   for e in entries if e["metric"] == "human_score" and e["significant"] and e["diff"] < 0]
    return entries, regressions


def _mean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
