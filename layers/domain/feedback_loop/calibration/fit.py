"""Learning a calibration map from labelled requests (numpy, scipy, scikit-learn: the training job and
the command line, never a Lambda function).

For each target (`p_good` on the binary-labelled requests, `expected_human` on every labelled one)
the candidates are:

- `binning` (raw scores with at most MAX_DISCRETE distinct values: a judge's 1-5 or 1-10): each
  value's weighted mean with PRIOR_LABELS pseudo-labels at the global mean (Beta smoothing), then
  made non-decreasing by weighted isotonic regression over the values;
- `isotonic`: weighted isotonic regression (scikit-learn's IsotonicRegression, clipped to [0, 1]);
- `platt`: sigmoid(slope * logit(score) + intercept), by weighted maximum likelihood (scipy), and
  with a log-odds offset per value of the segment fields, each shrunk towards 0 by an L2 penalty
  of PLATT_PENALTY;

the curve methods also per value of one segment field (a value with at least `min_segment_labels`
labels gets its own curve, the others the global one). The candidate with the lowest
cross-validated loss is fitted on every label: log loss for `p_good`, squared error for
`expected_human`; folds by a hash of the request id, so the choice does not depend on the order
read. Every curve is made strictly increasing by a tilt of TILT per knot, so the global map keeps
the raw score's order (its AUROC), and is kept within [floor, 1 - floor], floor = half a label
(0.5 / (n + 1)), so that no prediction is certain.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feedback_loop.labels import BAD_AT, GOOD_AT  # not scoring: the job's image lacks what it imports
from feedback_loop.calibration.curves import (LOGIT_CLIP, UNKNOWN, CalibrationMap, Curve, Logistic, Target,
                                              finite_number, map_id, segment_values)

MAX_DISCRETE = 25  # distinct raw scores up to which binning is a candidate
PRIOR_LABELS = 2.0  # Beta smoothing: pseudo-labels at the global mean added to each value's bin
PLATT_PENALTY = 1.0  # L2 penalty on each segment offset (log-odds), in labels
RIDGE = 1e-6  # on Platt's slope and intercept: finite when a fold's labels are all alike, nothing otherwise
TILT = 1e-9  # added per knot: strictly increasing curves keep the raw order
FOLDS = 5
METHODS = ("binning", "isotonic", "platt")


@dataclass
class Labelled:
    """Labelled requests as columns: raw score, human score, weight, id, segment values (each field's
    distinct values and every request's code among them) and cross-validation fold."""

    score: np.ndarray
    human: np.ndarray
    weight: np.ndarray
    ids: np.ndarray  # object
    codes: dict[str, tuple[list[str], np.ndarray]]  # field -> (its values, each request's index in them)
    fold: np.ndarray  # the request's fold (fold_of its id)
    timestamps: np.ndarray  # object

    def __len__(self) -> int:
        return len(self.score)

    @property
    def segments(self) -> dict[str, np.ndarray]:
        """field -> each request's value."""
        return {name: np.array(values, dtype=object)[codes] for name, (values, codes) in self.codes.items()}

    def take(self, index: np.ndarray) -> "Labelled":
        return Labelled(self.score[index], self.human[index], self.weight[index], self.ids[index],
                        {f: (values, codes[index]) for f, (values, codes) in self.codes.items()},
                        self.fold[index], self.timestamps[index])


def labelled(rows: Iterable[Mapping[str, Any]], fields: tuple[str, ...] = (), folds: int = FOLDS) -> Labelled:
    """The rows of labelled.jsonl (or eval records with a `human_score`) that have a raw score in
    [0, 1] and a human score; a row's segment values from its `segments` (the analysis's), its
    `cohort` for user_cohort, else its own fields (segment_values)."""
    score, human, weight, ids, stamps = [], [], [], [], []
    segments: dict[str, list[str]] = {f: [] for f in fields}
    for row in rows:
        overall = row.get("overall", (row.get("eval_scores") or {}).get("overall"))
        h = row.get("human_score")
        if not finite_number(overall) or not finite_number(h) or not 0 <= overall <= 1 or not 0 <= h <= 1:
            continue
        score.append(float(overall))
        human.append(float(h))
        weight.append(float(row["weight"]) if finite_number(row.get("weight")) and row["weight"] > 0 else 1.0)
        ids.append(str(row.get("request_id", len(ids))))
        stamps.append(str(row.get("timestamp", "")))
        own = segment_values(row, fields)
        given = row.get("segments") if isinstance(row.get("segments"), Mapping) else {}
        for name in fields:
            value = given.get(name) or (row.get("cohort") if name == "user_cohort" else None) or own[name]
            segments[name].append(str(value) if value not in (None, "") else UNKNOWN)
    codes = {}
    for name, column in segments.items():
        values = sorted(set(column))
        position = {v: i for i, v in enumerate(values)}
        codes[name] = (values, np.array([position[v] for v in column], dtype=np.int64))
    return Labelled(np.array(score, float), np.array(human, float), np.array(weight, float),
                    np.array(ids, dtype=object), codes, np.array([fold_of(i, folds) for i in ids], dtype=np.int64),
                    np.array(stamps, dtype=object))


def fold_of(request_id: str, folds: int = FOLDS) -> int:
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") % folds


# --- the methods: each fits on (score, target, weight[, segments]) and returns a Target ------------

def _strict(x: np.ndarray, y: np.ndarray, floor: float) -> Curve:
    """Knots as a curve: values within [floor, 1 - floor], then tilted to strictly increasing."""
    y = np.clip(y, floor, 1 - floor) + TILT * np.arange(len(y))
    return Curve(tuple(float(v) for v in x), tuple(float(v) for v in y))


def _pav(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted isotonic regression as IsotonicRegression(y_min=0, y_max=1).fit builds it: equal x
    merged into their weighted mean, scikit-learn's pool-adjacent-violators (isotonic_regression) on
    those, each flat run kept as its two ends (its X_thresholds_, y_thresholds_), without the
    estimator's checks (a fit is called a hundred times in a cross-validation)."""
    from sklearn.isotonic import isotonic_regression

    order = np.argsort(x, kind="stable")
    x, y, w = x[order], y[order], w[order]
    knots, start = np.unique(x, return_index=True)
    weight = np.add.reduceat(w, start)
    mean = np.add.reduceat(w * y, start) / weight
    fitted = isotonic_regression(mean, sample_weight=weight, y_min=0.0, y_max=1.0, increasing=True)
    keep = np.ones(len(knots), dtype=bool)
    if len(knots) > 2:
        keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return knots[keep], fitted[keep]


def isotonic_curve(score: np.ndarray, target: np.ndarray, weight: np.ndarray, floor: float) -> Curve:
    if len(np.unique(score)) < 2:
        mean = float(np.average(target, weights=weight))
        return _strict(np.array([0.0, 1.0]), np.array([mean, mean]), floor)
    x, y = _pav(score, target, weight)
    return _strict(x, y, floor)


def binning_curve(score: np.ndarray, target: np.ndarray, weight: np.ndarray, floor: float,
                  prior: Curve | None = None) -> Curve:
    """Each distinct score's weighted mean with PRIOR_LABELS pseudo-labels at the prior (the global
    mean, or the global curve's value for a segment's curve), then non-decreasing over the scores."""
    values, index = np.unique(score, return_inverse=True)
    totals = np.bincount(index, weights=weight * target, minlength=len(values))
    weights = np.bincount(index, weights=weight, minlength=len(values))
    centre = (np.array([prior(v) for v in values]) if prior is not None
              else np.full(len(values), float(np.average(target, weights=weight))))
    smoothed = (totals + PRIOR_LABELS * centre) / (weights + PRIOR_LABELS)
    if len(values) < 2:
        return _strict(np.array([0.0, 1.0]), np.repeat(smoothed, 2), floor)
    x, y = _pav(values, smoothed, weights + PRIOR_LABELS)
    return _strict(x, y, floor)


def _logit(score: np.ndarray) -> np.ndarray:
    clipped = np.clip(score, LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(clipped / (1 - clipped))


def platt(score: np.ndarray, target: np.ndarray, weight: np.ndarray,
          segments: Mapping[str, tuple[list[str], np.ndarray]], minimum: int) -> Logistic:
    """Weighted maximum likelihood of sigmoid(a z + b + sum of offsets), z = logit(score), the
    target a probability (0/1 labels, or human scores), each offset penalised by PLATT_PENALTY *
    offset^2 (the weights scaled to sum to the number of labels; a and b by RIDGE, which only keeps
    them finite when a fold's labels are all alike). Newton's method on the requests grouped by
    their design row (a judge's few grades times the segment values: a few dozen rows)."""
    z = _logit(score)
    w = weight * (len(weight) / weight.sum())
    columns, names = [], []
    for name in sorted(segments):
        values, codes = segments[name]
        counts = np.bincount(codes, minlength=len(values))
        for code, count in enumerate(counts):
            if count >= minimum:
                columns.append((codes == code).astype(float))
                names.append((name, values[code]))
    design = np.column_stack([z, np.ones_like(z), *columns])
    # one row per distinct (score, segment values): an integer key per request
    _, key = np.unique(score, return_inverse=True)
    key = key.astype(np.int64)
    for name in sorted(segments):
        values, codes = segments[name]
        key = key * len(values) + codes
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    rows, inverse = design[first], inverse.reshape(-1)
    total = np.bincount(inverse, weights=w, minlength=len(rows))
    positive = np.bincount(inverse, weights=w * target, minlength=len(rows))
    penalty = np.r_[RIDGE, RIDGE, np.full(len(columns), PLATT_PENALTY)]

    def loss(theta: np.ndarray) -> float:
        eta = rows @ theta
        return float(np.sum(positive * np.logaddexp(0, -eta) + (total - positive) * np.logaddexp(0, eta))
                     + np.sum(penalty * theta**2))

    theta = np.r_[1.0, 0.0, np.zeros(len(columns))]
    current = loss(theta)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(rows @ theta)))
        gradient = rows.T @ (total * p - positive) + 2 * penalty * theta
        hessian = (rows * (total * p * (1 - p))[:, None]).T @ rows + 2 * np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-10:  # backtracking: the penalised likelihood never gets worse
            candidate = theta - scale * step
            value = loss(candidate)
            if value <= current + 1e-12 * abs(current):
                break
            scale /= 2
        theta, improvement, current = candidate, current - value, value
        if np.max(np.abs(scale * step)) < 1e-12 or improvement <= 1e-15 * abs(current):
            break
    offsets: dict[str, dict[str, float]] = {}
    for (name, value), offset in zip(names, theta[2:]):
        offsets.setdefault(name, {})[value] = float(offset)
    return Logistic(float(theta[0]), float(theta[1]), offsets)


@dataclass(frozen=True)
class Candidate:
    method: str
    segment_field: str | None = None  # binning, isotonic: per value of this field; platt: offsets for all

    @property
    def name(self) -> str:
        return self.method + (f" by {self.segment_field}" if self.segment_field else "")


def candidates(data: Labelled, fields: tuple[str, ...], methods: tuple[str, ...] = METHODS) -> list[Candidate]:
    discrete = len(np.unique(data.score)) <= MAX_DISCRETE
    found = []
    for method in methods:
        if method == "binning" and not discrete:
            continue
        found.append(Candidate(method))
        if method == "platt":
            if fields:
                found.append(Candidate(method, "+".join(fields)))
        else:
            found += [Candidate(method, name) for name in fields]
    return found


def fit_target(candidate: Candidate, data: Labelled, target: np.ndarray, minimum: int) -> Target:
    floor = 0.5 / (len(data) + 1)
    if candidate.method == "platt":
        fields = candidate.segment_field.split("+") if candidate.segment_field else []
        return Target("platt", candidate.segment_field,
                      logistic=platt(data.score, target, data.weight, {f: data.codes[f] for f in fields}, minimum))
    make = isotonic_curve if candidate.method == "isotonic" else binning_curve
    overall = make(data.score, target, data.weight, floor)
    by_value = {}
    if candidate.segment_field:
        values, codes = data.codes[candidate.segment_field]
        for code, count in enumerate(np.bincount(codes, minlength=len(values))):
            if count >= minimum:
                member = codes == code
                by_value[values[code]] = (binning_curve(data.score[member], target[member], data.weight[member], floor,
                                                        overall) if candidate.method == "binning" else
                                          isotonic_curve(data.score[member], target[member], data.weight[member], floor))
    return Target(candidate.method, candidate.segment_field, overall, by_value)


def predict(target: Target, data: Labelled) -> np.ndarray:
    """A target on every request, vectorised (the same figures as CalibrationMap.apply, which the
    API runs in plain Python: tests/unit/test_calibration.py)."""
    if target.logistic is not None:
        z = _logit(data.score) * target.logistic.slope + target.logistic.intercept
        for name, offsets in target.logistic.offsets.items():
            if name in data.codes:
                values, codes = data.codes[name]
                z = z + np.array([offsets.get(v, 0.0) for v in values] or [0.0])[codes]
        return 1 / (1 + np.exp(-z))
    assert target.curve is not None
    out = np.interp(data.score, target.curve.x, target.curve.y)
    if target.segment_field and target.segment_field in data.codes:
        values, codes = data.codes[target.segment_field]
        for code, value in enumerate(values):
            curve = target.by_value.get(value)
            if curve is not None:
                member = codes == code
                out[member] = np.interp(data.score[member], curve.x, curve.y)
    return out


def log_losses(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each request's log loss (probabilities clipped to [1e-15, 1 - 1e-15])."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def log_loss(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    return float(np.average(log_losses(p, y), weights=w))


def figures(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, bins: bool = False) -> dict[str, Any]:
    """How well probabilities p of good fit binary labels y: ECE (10 equal-width bins) and Brier
    (stats.calibration), log loss (weighted by w when given), AUROC (None with one kind of label),
    and with `bins` the reliability bins."""
    from feedback_loop.analysis import stats

    found = stats.calibration(p, y)
    out = {"ece": found.ece, "brier": found.brier, "log_loss": log_loss(p, y, w) if len(p) else None,
           "auroc": stats.auroc(p, np.asarray(y, bool)).auroc}
    if bins:
        out["reliability_bins"] = [asdict(b) for b in found.bins]
    return out


def fold_auroc(p: np.ndarray, y: np.ndarray, fold: np.ndarray) -> float | None:
    """The mean over folds of each fold's AUROC (folds with both kinds of label), as scikit-learn's
    cross_val_score scores a ranking: each fold's predictions come from one map, so a monotone map
    keeps the raw score's AUROC there. The AUROC of the pooled predictions would also rank one map's
    figures against another's, and a map fitted without a fold leans against that fold's labels
    (fewer good labels in the fold leave more in the other four), which lowers it by construction."""
    from feedback_loop.analysis import stats

    areas = [stats.auroc(p[fold == k], np.asarray(y[fold == k], bool)).auroc for k in np.unique(fold)]
    known = [a for a in areas if a is not None]
    return float(np.mean(known)) if known else None


def out_of_fold_figures(p: np.ndarray, y: np.ndarray, w: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    """figures() of out-of-fold predictions, with the AUROC averaged over folds (fold_auroc) and the
    pooled one beside it as `auroc_pooled`."""
    found = figures(p, y, w)
    return {**found, "auroc": fold_auroc(p, y, fold), "auroc_pooled": found["auroc"]}


def squared_error(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    return float(np.average((p - y) ** 2, weights=w))


@dataclass
class Fitted:
    map: CalibrationMap
    cross_validated: dict[str, Any]  # per target: each candidate's loss, the chosen one, out-of-fold figures
    held_out: list[dict[str, Any]] | None = None  # fit_gated: each held-out request's label and figures


def _choose(data: Labelled, target: np.ndarray, loss: Any, fields: tuple[str, ...], minimum: int,
            methods: tuple[str, ...], folds: int) -> tuple[Target, dict[str, Any], np.ndarray]:
    split = [(np.flatnonzero(data.fold != k), np.flatnonzero(data.fold == k)) for k in range(folds)]
    split = [(train, test) for train, test in split if len(train) and len(test)]
    parts = [(data.take(train), data.take(test)) for train, test in split]
    losses, out_of_fold = {}, {}
    tried = candidates(data, fields, methods)
    for candidate in tried:
        predicted = np.full(len(data), np.nan)
        for (train, test), (train_data, test_data) in zip(split, parts):
            chosen = fit_target(candidate, train_data, target[train], minimum)
            predicted[test] = predict(chosen, test_data)
        known = ~np.isnan(predicted)
        losses[candidate.name] = loss(predicted[known], target[known], data.weight[known])
        out_of_fold[candidate.name] = predicted
    best = min(losses, key=lambda name: (losses[name], name))
    candidate = next(c for c in tried if c.name == best)
    return fit_target(candidate, data, target, minimum), {"candidates": losses, "chosen": best}, out_of_fold[best]


def fit(data: Labelled, fields: tuple[str, ...] = (), min_segment_labels: int = 50,
        methods: tuple[str, ...] = METHODS, folds: int = FOLDS) -> Fitted:
    """The calibration map of the labelled requests: each target's method chosen by cross-validated
    loss and fitted on every label; with the raw and calibrated out-of-fold figures."""
    binary = (data.human >= GOOD_AT) | (data.human <= BAD_AT)
    if binary.sum() < 2 * folds or len(np.unique(data.human[binary] >= GOOD_AT)) < 2:
        raise ValueError(f"needs at least {2 * folds} requests labelled good or bad, of both kinds "
                         f"(has {int(binary.sum())})")
    on_binary = data.take(np.flatnonzero(binary))
    good = (on_binary.human >= GOOD_AT).astype(float)
    p_good, p_figures, p_oof = _choose(on_binary, good, log_loss, fields, min_segment_labels, methods, folds)
    expected, e_figures, _ = _choose(data, data.human, squared_error, fields, min_segment_labels, methods, folds)
    known = ~np.isnan(p_oof)
    labels, weights, folds_of = good[known], on_binary.weight[known], on_binary.fold[known]
    p_figures["out_of_fold"] = {"n": int(known.sum()),
                                "raw": out_of_fold_figures(on_binary.score[known], labels, weights, folds_of),
                                "calibrated": out_of_fold_figures(p_oof[known], labels, weights, folds_of)}
    trained = {"labelled": len(data), "binary": int(binary.sum()), "good": int(good.sum()),
               "folds": folds, "since": min(data.timestamps, default=None), "until": max(data.timestamps, default=None),
               "p_good": p_figures, "expected_human": e_figures}
    calibration_map = CalibrationMap(p_good, expected, fields, min_segment_labels, trained)
    return Fitted(calibration_map, {"p_good": p_figures, "expected_human": e_figures})


def read_labelled(paths: Iterable[str], fields: tuple[str, ...] = ()) -> tuple[Labelled, Counter[str]]:
    """labelled.jsonl files (or folders of them, searched recursively; gzip or not): the rows, and
    the lines skipped by reason."""
    from feedback_loop.analysis.evallogs import JSON_SUFFIXES, EvalLogSource

    skipped: Counter[str] = Counter()
    names = []
    for path in paths:
        found = Path(path)
        names += sorted(str(p) for p in found.rglob("*") if p.is_file() and p.name.endswith(JSON_SUFFIXES)) \
            if found.is_dir() else [str(found)]
    source = EvalLogSource(".")
    rows = [row for name in names for row in source.rows(name, skipped) if isinstance(row, Mapping)]
    data = labelled(rows, fields)
    skipped["without_a_score_and_a_human_score"] += len(rows) - len(data)
    return data, +skipped


def fit_gated(data: Labelled, fields: tuple[str, ...] = (), min_segment_labels: int = 50,
              policy: Any = None, alpha: float = 0.1, delta: float = 0.1,
              champion: CalibrationMap | None = None) -> tuple[Fitted, Any]:
    """The map learned on the earlier labels (all but the latest `policy.held_out_share` by time),
    judged by the calibrator's gate against the raw score on the later ones, with its
    trust-or-escalate thresholds set on them (globally and per segment value with `segment_min`
    held-out labels). The champion is the raw score, or `champion` (the calibrator in service: `data`
    then needs its fields too). The map is the one the gate judged: `trained.gate` holds the decision,
    `trained.split` the cut, `trained.champion` what it was judged against; `Fitted.held_out` lists each
    held-out request's label and figures (what the registry's gate reads again: regate)."""
    import dataclasses

    from feedback_loop.calibration import gate

    policy = policy or gate.CalibratorPolicy()
    binary = (data.human >= GOOD_AT) | (data.human <= BAD_AT)
    train_index, held_index, cut = gate.time_split(data.timestamps, data.ids, policy.held_out_share)
    if not len(train_index):
        raise ValueError(f"every label has the same timestamp ({cut or 'none'}): nothing is earlier than the "
                         "held-out part; give the labels their times, or fit without a gate (--held-out-share 0)")
    fitted = fit(data.take(train_index), fields, min_segment_labels)
    held = data.take(held_index[binary[held_index]])
    labels = (held.human >= GOOD_AT).astype(float)
    challenger, segments = predict(fitted.map.p_good, held), held.segments
    incumbent = held.score if champion is None else predict(champion.p_good, held)
    decision = gate.gate(challenger, incumbent, labels, {f: segments[f] for f in fields}, policy)
    found = gate.escalation(challenger, labels, alpha, delta)
    by_segment: dict[str, dict[str, float | None]] = {}
    for name, column in segments.items():
        for value in sorted(set(column.tolist())):
            member = column == value
            if member.sum() >= policy.segment_min:
                by_segment.setdefault(name, {})[str(value)] = gate.escalation(
                    challenger[member], labels[member], alpha, delta).threshold
    escalation = {"alpha": alpha, "delta": delta, "threshold": found.threshold, "held_out": found.n,
                  "decided_alone": found.decided_alone, "upper_bound": found.upper_bound, "by_segment": by_segment,
                  "method": "fixed-sequence testing, Clopper-Pearson (Jung et al. 2025)"}
    trained = {**fitted.map.trained, "split": {"cut": cut, "training": len(train_index), "held_out": len(held_index),
                                               "held_out_binary": len(held)},
               "gate": decision.as_dict(), "champion": "raw score" if champion is None else map_id(champion)}
    gated = dataclasses.replace(fitted.map, trained=trained, escalation=escalation)
    held_out = [{"request_id": str(held.ids[i]), "timestamp": str(held.timestamps[i]), "label": int(labels[i]),
                 "raw": float(held.score[i]), "challenger": float(challenger[i]), "champion": float(incumbent[i]),
                 "segments": {f: str(segments[f][i]) for f in fields}} for i in range(len(held))]
    return Fitted(gated, fitted.cross_validated, held_out), decision


def regate(rows: Iterable[Mapping[str, Any]], policy: Any = None) -> Any:
    """The calibrator's gate again on held-out rows as fit_gated lists them (`label`, `challenger`,
    `champion`, `segments`): the registry decides from the job's figures, not from its verdict."""
    from feedback_loop.calibration import gate

    rows = list(rows)
    fields = sorted({name for row in rows for name in row.get("segments") or {}})
    column = lambda key: np.array([float(row[key]) for row in rows], float)  # noqa: E731
    segments = {name: np.array([str((row.get("segments") or {}).get(name, UNKNOWN)) for row in rows], dtype=object)
                for name in fields}
    return gate.gate(column("challenger"), column("champion"), column("label"), segments,
                     policy or gate.CalibratorPolicy())
