"""A calibration map and its application, in plain Python (the API function applies it; no numpy).

A map has two targets, each learned by one method:

- `p_good`: P(human label good | raw score, segment values), learned on the requests with a binary
  human label (docs/ARCHITECTURE.md, "Calibrated score");
- `expected_human`: E(human score | raw score, segment values), learned on every labelled request.

A target is either piecewise-linear curves (`binning` and `isotonic`: knots x increasing, values y,
linear between the knots and flat outside them, as numpy.interp; one global curve and, when the
target is per segment, one curve per value of one field that had enough labels) or a logistic map
(`platt`: sigmoid(slope * logit(score) + intercept + the offsets of the request's segment values)).
A value the map has no curve or offset for uses the global one.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = 1  # the artefact's format version (`format` in its JSON)
UNKNOWN = "unknown"  # a segment field a request lacks (the analysis's name for it)
# scores are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before the logit of Platt scaling: a judge's
# extreme grades (0 and 1 on the 0-1 scale) stay finite and as far apart as logit(0.01) = -4.6
LOGIT_CLIP = 0.01


def finite_number(value: Any) -> bool:
    """A real number (an int or a float, not a bool), finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Curve:
    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, score: float) -> float:
        x, y = self.x, self.y
        if score <= x[0]:
            return y[0]
        if score >= x[-1]:
            return y[-1]
        right = bisect.bisect_right(x, score)
        left = right - 1
        span = x[right] - x[left]
        return y[left] + (y[right] - y[left]) * (score - x[left]) / span


@dataclass(frozen=True)
class Logistic:
    slope: float
    intercept: float
    offsets: dict[str, dict[str, float]] = field(default_factory=dict)  # field -> value -> log-odds offset

    def __call__(self, score: float, segments: Mapping[str, str]) -> float:
        clipped = min(max(score, LOGIT_CLIP), 1 - LOGIT_CLIP)
        z = self.slope * math.log(clipped / (1 - clipped)) + self.intercept
        z += sum(values.get(segments.get(name, UNKNOWN), 0.0) for name, values in self.offsets.items())
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


@dataclass(frozen=True)
class Target:
    method: str  # binning, isotonic or platt
    segment_field: str | None = None  # the curves' field (binning, isotonic); None: one curve for all
    curve: Curve | None = None
    by_value: dict[str, Curve] = field(default_factory=dict)
    logistic: Logistic | None = None

    def __call__(self, score: float, segments: Mapping[str, str]) -> float:
        if self.logistic is not None:
            return self.logistic(score, segments)
        assert self.curve is not None
        own = self.by_value.get(segments.get(self.segment_field, UNKNOWN)) if self.segment_field else None
        return (own or self.curve)(score)

    def lowest_score_for(self, value: float, segments: Mapping[str, str]) -> float | None:
        """The lowest raw score in [0, 1] whose mapped value is at least `value` (what a raw
        threshold must be for the map to say `value`), None if no score reaches it."""
        if self.logistic is not None:
            logistic = self.logistic

            def mapped(score: float) -> float:
                return logistic(score, segments)

            if mapped(0.0) >= value:
                return 0.0
            if logistic.slope <= 0 or mapped(1.0) < value or not 0 < value < 1:
                return None
            # z(score) = slope * logit(score) + rest, increasing: solve z = logit(value) inside the clip
            rest = logistic.intercept + sum(values.get(segments.get(name, UNKNOWN), 0.0)
                                            for name, values in logistic.offsets.items())
            z = (math.log(value / (1 - value)) - rest) / logistic.slope
            return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
        assert self.curve is not None
        own = self.by_value.get(segments.get(self.segment_field, UNKNOWN)) if self.segment_field else None
        x, y = (own or self.curve).x, (own or self.curve).y
        if y[0] >= value:
            return 0.0
        for i in range(len(x) - 1):
            if y[i + 1] >= value:  # y[i] < value: the crossing is inside this piece
                return x[i] + (value - y[i]) * (x[i + 1] - x[i]) / (y[i + 1] - y[i])
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "segment_field": self.segment_field}
        if self.curve is not None:
            out["curve"] = {"x": list(self.curve.x), "y": list(self.curve.y)}
            out["by_value"] = {v: {"x": list(c.x), "y": list(c.y)} for v, c in sorted(self.by_value.items())}
        if self.logistic is not None:
            out["logistic"] = asdict(self.logistic)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Target":
        def curve(c: Mapping[str, Any]) -> Curve:
            x, y = tuple(float(v) for v in c["x"]), tuple(float(v) for v in c["y"])
            if not x or len(x) != len(y) or any(b <= a for a, b in zip(x, x[1:])):
                raise ValueError("a curve needs as many values as knots, the knots increasing")
            return Curve(x, y)

        logistic = data.get("logistic")
        return cls(data["method"], data.get("segment_field"),
                   curve(data["curve"]) if data.get("curve") else None,
                   {str(v): curve(c) for v, c in (data.get("by_value") or {}).items()},
                   Logistic(float(logistic["slope"]), float(logistic["intercept"]),
                            {f: {str(v): float(o) for v, o in values.items()}
                             for f, values in logistic.get("offsets", {}).items()}) if logistic else None)


@dataclass(frozen=True)
class CalibrationMap:
    p_good: Target
    expected_human: Target
    fields: tuple[str, ...] = ()  # the segment fields the map reads
    min_segment_labels: int = 50
    trained: dict[str, Any] = field(default_factory=dict)  # what it was learned from, and its figures
    # trust or escalate (calibration/gate.py): `alpha`, `delta`, `threshold` (the confidence
    # max(p, 1 - p) at or above which the judge decides alone; None: never), `by_segment`
    # (field -> value -> threshold, for the values with enough held-out labels); empty: not set
    escalation: dict[str, Any] = field(default_factory=dict)

    def apply(self, score: float, segments: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The calibrated figures of a raw score in [0, 1] (a value outside is clipped) and the
        request's segment values (a missing field is `unknown`); with the escalation thresholds set,
        `needs_review`: whether a person should look (the judge is not confident enough)."""
        if not finite_number(score):
            raise ValueError("the score must be a finite number")
        score = min(max(float(score), 0.0), 1.0)
        values = {name: str((segments or {}).get(name) or UNKNOWN) for name in self.fields}
        p_good = self.p_good(score, values)
        out: dict[str, Any] = {"p_good": p_good, "expected_human": self.expected_human(score, values)}
        if self.escalation:
            threshold = self.review_threshold(values)
            out["needs_review"] = threshold is None or max(p_good, 1 - p_good) < threshold
        return out

    def review_threshold(self, values: Mapping[str, str]) -> float | None:
        """The escalation threshold of the request's segment (the highest of its values' own
        thresholds, the strictest), else the global one."""
        own = [by_value[values[name]] for name, by_value in self.escalation.get("by_segment", {}).items()
               if values.get(name) in by_value]
        if own:
            return None if any(t is None for t in own) else max(own)
        return self.escalation.get("threshold")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": "calibrator", "fields": list(self.fields),
                "min_segment_labels": self.min_segment_labels, "p_good": self.p_good.to_json(),
                "expected_human": self.expected_human.to_json(), "trained": self.trained,
                "escalation": self.escalation}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CalibrationMap":
        if not isinstance(data, Mapping) or data.get("kind") != "calibrator" or data.get("format") != FORMAT:
            raise ValueError(f"not a calibration map of format {FORMAT}")
        return cls(Target.from_json(data["p_good"]), Target.from_json(data["expected_human"]),
                   tuple(data.get("fields", ())), int(data.get("min_segment_labels", 50)),
                   dict(data.get("trained", {})), dict(data.get("escalation") or {}))

    @classmethod
    def loads(cls, text: str | bytes) -> "CalibrationMap":
        return cls.from_json(json.loads(text))


def segment_values(record: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, str]:
    """A record's values of the segment fields: a top-level field, else one under `metadata` (as a
    change's segment reads them); `unknown` when absent or empty."""
    metadata = record.get("metadata") if isinstance(record.get("metadata"), Mapping) else {}
    out = {}
    for name in fields:
        value = record.get(name) if name in record and not isinstance(record.get(name), (dict, list)) else None
        if value in (None, ""):
            value = metadata.get(name)
        out[name] = UNKNOWN if value in (None, "") or isinstance(value, (dict, list)) else str(value)
    return out


def map_id(calibration_map: CalibrationMap) -> str:
    """A short content hash of the map (what records name as the map that calibrated them)."""
    import hashlib

    return hashlib.sha256(json.dumps(calibration_map.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def calibrated_record(record: Mapping[str, Any], calibration_map: CalibrationMap, name: str | None = None
                      ) -> dict[str, Any] | None:
    """The record with its calibrated figures beside the raw score, never over it: eval_scores
    `calibrated` (p_good) and `expected_human`, metadata `calibration_map` (`name`, else the map's
    id) and, where the map has review thresholds, `needs_review` ("true" or "false"); None for a
    record without a raw `overall` in [0, 1]."""
    scores = record.get("eval_scores")
    overall = scores.get("overall") if isinstance(scores, Mapping) else None
    if not finite_number(overall) or not 0 <= overall <= 1:
        return None
    found = calibration_map.apply(overall, segment_values(record, calibration_map.fields))
    metadata = dict(record.get("metadata")) if isinstance(record.get("metadata"), Mapping) else {}
    metadata["calibration_map"] = name or map_id(calibration_map)
    if "needs_review" in found:  # text, as metadata values are: a segment field the report can split on
        metadata["needs_review"] = "true" if found["needs_review"] else "false"
    return {**record, "eval_scores": {**scores, "calibrated": found["p_good"], "expected_human": found["expected_human"]},
            "metadata": metadata}
