"""The statistics of the weekly report: small pure functions, each naming its definition.

Each returns its `n` with its numbers. Where a statistic is undefined (too few points, a constant
input), its values are None and `note` says why: inconclusive is an answer, a crash is not.
Mean comparisons take sufficient statistics (n, mean, variance), so the analysis can stream.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import stats

def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


# --- correlation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation:
    method: str
    n: int
    r: float | None
    p_value: float | None
    ci: tuple[float, float] | None
    ci_method: str
    note: str | None = None


def _fisher_ci(r: float, se: float, confidence: float) -> tuple[float, float]:
    z = math.atanh(max(min(r, 1 - 1e-15), -1 + 1e-15))
    half = _z(confidence) * se
    return math.tanh(z - half), math.tanh(z + half)


def _degenerate(x: np.ndarray, y: np.ndarray, minimum: int) -> str | None:
    if len(x) < minimum:
        return f"needs at least {minimum} pairs"
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return "a constant input has no correlation"
    return None


def pearson(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> Correlation:
    """Pearson's r with scipy's p-value; CI by Fisher's z transform, se = 1 / sqrt(n - 3)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    method = "fisher_z"
    if note := _degenerate(x, y, 4):
        return Correlation("pearson", len(x), None, None, None, method, note)
    result = stats.pearsonr(x, y)
    ci = _fisher_ci(float(result.statistic), 1 / math.sqrt(len(x) - 3), confidence)
    return Correlation("pearson", len(x), float(result.statistic), float(result.pvalue), ci, method)


def spearman(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> Correlation:
    """Spearman's rho (ties get average ranks) with scipy's t-approximation p-value; CI by Fisher's
    z with the Bonett-Wright (2000) standard error sqrt((1 + rho^2 / 2) / (n - 3))."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    method = "fisher_z_bonett_wright"
    if note := _degenerate(x, y, 4):
        return Correlation("spearman", len(x), None, None, None, method, note)
    result = stats.spearmanr(x, y)
    rho = float(result.statistic)
    ci = _fisher_ci(rho, math.sqrt((1 + rho**2 / 2) / (len(x) - 3)), confidence)
    return Correlation("spearman", len(x), rho, float(result.pvalue), ci, method)


def concordance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """S_i = sum over j of sign(x_i - x_j) sign(y_i - y_j), for every i: each observation's
    concordant minus discordant pairs (ties count 0), in O(n log n) (a Fenwick tree over y's
    ranks), or from the table of (x, y) counts when the values are few (ratings)."""
    n = len(x)
    rx = np.unique(x, return_inverse=True)[1].astype(np.int64)
    ry = np.unique(y, return_inverse=True)[1].astype(np.int64)
    kx, ky = int(rx.max()) + 1, int(ry.max()) + 1
    if kx * ky <= 4_000_000:
        table = np.bincount(rx * ky + ry, minlength=kx * ky).reshape(kx, ky)
        # at (a, b): counts with x below a (or above) and y below b (or above), by cumulative sums
        grid = np.zeros((kx + 1, ky + 1), dtype=np.int64)
        grid[1:, 1:] = table.cumsum(0).cumsum(1)
        def count(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
            return grid[x1, y1] - grid[x0, y1] - grid[x1, y0] + grid[x0, y0]  # x in [x0, x1), y in [y0, y1)
        zero, top_x, top_y = np.zeros(n, dtype=np.int64), np.full(n, kx), np.full(n, ky)
        same = count(zero, rx, zero, ry) + count(rx + 1, top_x, ry + 1, top_y)
        differ = count(zero, rx, ry + 1, top_y) + count(rx + 1, top_x, zero, ry)
        return (same - differ).astype(float)
    # below and above in y overall, and within the same x
    y_counts = np.bincount(ry, minlength=ky)
    below_all = np.concatenate([[0], np.cumsum(y_counts)[:-1]])[ry]
    above_all = n - below_all - y_counts[ry]
    order = np.lexsort((ry, rx))
    xs, ys = rx[order], ry[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    group_start = np.repeat(starts, ends - starts)
    group_end = np.repeat(ends, ends - starts)
    first_equal = np.searchsorted(xs * ky + ys, xs * ky + ys, side="left")
    past_equal = np.searchsorted(xs * ky + ys, xs * ky + ys, side="right")
    below_same, above_same = np.empty(n, np.int64), np.empty(n, np.int64)
    below_same[order], above_same[order] = first_equal - group_start, group_end - past_equal
    # among x_j < x_i: y_j below and above y_i, sweeping the x groups in order
    tree = [0] * (ky + 1)
    lower_below, lower_above = np.empty(n, np.int64), np.empty(n, np.int64)
    ranks, positions = ys.tolist(), order.tolist()
    for start, end in zip(starts.tolist(), ends.tolist()):
        for k in range(start, end):
            below = at_most = 0
            i = ranks[k]
            while i > 0:  # inserted with rank < ranks[k]
                below += tree[i]
                i -= i & -i
            i = ranks[k] + 1
            while i > 0:
                at_most += tree[i]
                i -= i & -i
            lower_below[positions[k]], lower_above[positions[k]] = below, start - at_most
        for k in range(start, end):
            i = ranks[k] + 1
            while i <= ky:
                tree[i] += 1
                i += i & -i
    higher_below = below_all - lower_below - below_same
    higher_above = above_all - lower_above - above_same
    return (lower_below + higher_above - lower_above - higher_below).astype(float)


def tau_b_se(x: np.ndarray, y: np.ndarray) -> float:
    """The asymptotic standard error of Kendall's tau-b, valid with ties: tau-b = a / sqrt(b c),
    with a, b, c the U-statistics of sign(dx) sign(dy), [dx != 0] and [dy != 0] over pairs; their
    covariance from each observation's projection (4/n times the covariance of S_i, the pairs
    untied in x, untied in y, each over n - 1: Hoeffding), carried to tau-b by the delta method."""
    n = len(x)
    def untied(v: np.ndarray) -> np.ndarray:
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        return (n - counts[inverse]).astype(float)
    h = np.vstack([concordance(x, y), untied(x), untied(y)]) / (n - 1)
    a, b, c = h.mean(axis=1)
    root = math.sqrt(b * c)
    gradient = np.array([1 / root, -a / (2 * b * root), -a / (2 * c * root)])
    return math.sqrt(max(float(gradient @ (np.cov(h) * 4 / n) @ gradient), 0.0))


def kendall_tau_b(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> Correlation:
    """Kendall's tau-b (tie-corrected) with scipy's p-value; CI by Fisher's z with tau-b's
    asymptotic standard error (tau_b_se, valid with ties) over 1 - tau^2. The constant
    Fieller-Hartley-Pearson se, sqrt(0.437 / (n - 4)), assumes no ties and was too narrow on tied
    ratings (docs/REPORT.md: coverage)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    method = "fisher_z_delta_tau_b"
    if note := _degenerate(x, y, 5):
        return Correlation("kendall", len(x), None, None, None, method, note)
    result = stats.kendalltau(x, y, variant="b")
    tau = float(result.statistic)
    clipped = max(min(tau, 1 - 1e-15), -1 + 1e-15)
    ci = _fisher_ci(tau, tau_b_se(x, y) / (1 - clipped**2), confidence)
    return Correlation("kendall", len(x), tau, float(result.pvalue), ci, method)


def weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray, confidence: float = 0.95) -> Correlation:
    """Pearson's r of the weighted joint distribution; p-value and Fisher-z CI use the Kish
    effective sample size in place of n."""
    x, y, w = np.asarray(x, float), np.asarray(y, float), np.asarray(w, float)
    method = "fisher_z_kish_ess"
    if note := _degenerate(x, y, 4):
        return Correlation("pearson_weighted", len(x), None, None, None, method, note)
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    cov = np.average((x - mx) * (y - my), weights=w)
    r = float(cov / math.sqrt(np.average((x - mx) ** 2, weights=w) * np.average((y - my) ** 2, weights=w)))
    ess = kish_ess(w)
    if ess <= 4:
        return Correlation("pearson_weighted", len(x), r, None, None, method, "effective sample size too small")
    t = r * math.sqrt((ess - 2) / max(1e-15, 1 - r**2))
    p = float(2 * stats.t.sf(abs(t), ess - 2))
    return Correlation("pearson_weighted", len(x), r, p, _fisher_ci(r, 1 / math.sqrt(ess - 3), confidence), method)


# --- agreement with binary labels -----------------------------------------------------------


@dataclass(frozen=True)
class Auroc:
    n: int
    n_positive: int
    n_negative: int
    auroc: float | None
    p_value: float | None
    ci: tuple[float, float] | None
    ci_method: str = "hanley_mcneil"
    se: float | None = None  # Hanley-McNeil; the interval is clipped to [0, 1], the se is not


def auroc(scores: np.ndarray, labels: np.ndarray, confidence: float = 0.95) -> Auroc:
    """Area under the ROC curve = Mann-Whitney U / (n1 n0) (ties count a half); p-value of
    scipy's two-sided Mann-Whitney test against 0.5; CI from the Hanley-McNeil (1982) variance."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    positive, negative = scores[labels], scores[~labels]
    n1, n0 = len(positive), len(negative)
    if n1 == 0 or n0 == 0:
        return Auroc(len(scores), n1, n0, None, None, None)
    test = stats.mannwhitneyu(positive, negative, alternative="two-sided")
    a = float(test.statistic) / (n1 * n0)
    q1, q2 = a / (2 - a), 2 * a**2 / (1 + a)
    variance = (a * (1 - a) + (n1 - 1) * (q1 - a**2) + (n0 - 1) * (q2 - a**2)) / (n1 * n0)
    half = _z(confidence) * math.sqrt(max(variance, 0.0))
    return Auroc(len(scores), n1, n0, a, float(test.pvalue), (max(0.0, a - half), min(1.0, a + half)),
                 se=math.sqrt(max(variance, 0.0)))


@dataclass(frozen=True)
class Kappa:
    n: int
    kappa: float | None
    observed_agreement: float | None
    expected_agreement: float | None
    ci: tuple[float, float] | None
    ci_method: str = "large_sample_se"


def cohen_kappa(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Kappa:
    """Cohen's kappa between two binary raters: (p_o - p_e) / (1 - p_e); CI from the
    large-sample standard error sqrt(p_o (1 - p_o) / (n (1 - p_e)^2))."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    n = len(a)
    if n == 0:
        return Kappa(0, None, None, None, None)
    po = float(np.mean(a == b))
    pe = float(np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b))
    if pe >= 1:
        return Kappa(n, None, po, pe, None)
    kappa = (po - pe) / (1 - pe)
    half = _z(confidence) * math.sqrt(po * (1 - po) / (n * (1 - pe) ** 2))
    return Kappa(n, kappa, po, pe, (kappa - half, kappa + half))


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    n: int
    mean_predicted: float | None
    observed_rate: float | None


@dataclass(frozen=True)
class Calibration:
    n: int
    ece: float | None
    brier: float | None
    bins: list[ReliabilityBin] = field(default_factory=list)
    binning: str = "10 equal-width bins on [0, 1]"


def calibration(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> Calibration:
    """Expected calibration error sum_b (n_b / N) |observed_b - predicted_b| over equal-width bins
    (the last bin includes 1.0), and the Brier score mean((p - y)^2)."""
    p, y = np.asarray(probabilities, float), np.asarray(labels, float)
    if len(p) == 0:
        return Calibration(0, None, None)
    index = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    predicted = np.bincount(index, weights=p, minlength=n_bins)
    observed = np.bincount(index, weights=y, minlength=n_bins)
    bins, ece = [], 0.0
    for b in range(n_bins):
        if counts[b]:
            mean_p, rate = predicted[b] / counts[b], observed[b] / counts[b]
            ece += counts[b] / len(p) * abs(rate - mean_p)
            bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, int(counts[b]), float(mean_p), float(rate)))
        else:
            bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, 0, None, None))
    return Calibration(len(p), float(ece), float(np.mean((p - y) ** 2)), bins)


# --- proportions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Proportion:
    k: int
    n: int
    rate: float | None
    ci: tuple[float, float] | None
    ci_method: str = "wilson"


def wilson(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """k / n with the Wilson score interval (scipy's binomtest)."""
    if n == 0:
        return Proportion(k, n, None, None)
    interval = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(int(k), int(n), k / n, (float(interval.low), float(interval.high)))


# --- comparisons (impact of changes, segments against the rest) -------------------------------


@dataclass(frozen=True)
class Comparison:
    """Treatment (or after, or segment) minus control (or before, or the rest)."""

    test: str
    n_control: int
    n_treatment: int
    mean_control: float | None
    mean_treatment: float | None
    diff: float | None
    diff_ci: tuple[float, float] | None
    relative: float | None
    relative_ci: tuple[float, float] | None
    p_value: float | None
    effect_size: float | None
    effect_size_name: str
    note: str | None = None


def _relative(mt: float, mc: float, var_t_of_mean: float, var_c_of_mean: float, confidence: float
              ) -> tuple[float | None, tuple[float, float] | None]:
    """mt / mc - 1 with a delta-method interval: Var ≈ Var(mt)/mc^2 + mt^2 Var(mc)/mc^4."""
    if mc == 0:
        return None, None
    relative = mt / mc - 1
    se = math.sqrt(var_t_of_mean / mc**2 + mt**2 * var_c_of_mean / mc**4)
    half = _z(confidence) * se
    return relative, (relative - half, relative + half)


def ratio_mover(p_t: float, ci_t: tuple[float, float], p_c: float, ci_c: tuple[float, float]
                ) -> tuple[float, float] | None:
    """An interval for p_t / p_c (p_c > 0) from an interval for each proportion: MOVER on the log
    scale (Zou and Donner 2008, with Wilson intervals): log p_t - log p_c, its bounds from each
    log bound's distance to its estimate. It keeps its width at 0% or 100%, where the delta
    method's variance p(1 - p)/n is zero. With p_t = 0 (log undefined): [0, u_t / l_c]."""
    (l_t, u_t), (l_c, u_c) = ci_t, ci_c
    if p_t == 0:
        return (0.0, u_t / l_c) if l_c > 0 else None
    estimate = math.log(p_t) - math.log(p_c)
    below = math.hypot(math.log(p_t) - math.log(l_t), math.log(u_c) - math.log(p_c))
    above = math.hypot(math.log(u_t) - math.log(p_t), math.log(p_c) - math.log(l_c))
    return math.exp(estimate - below), math.exp(estimate + above)


def welch(n_c: int, mean_c: float, var_c: float, n_t: int, mean_t: float, var_t: float,
          confidence: float = 0.95) -> Comparison:
    """Welch's unequal-variance t-test from sufficient statistics (sample variances, ddof = 1):
    Welch-Satterthwaite degrees of freedom, t CI for the difference, delta-method CI for the
    relative difference, Hedges' g (pooled SD with the small-sample correction J)."""
    if n_c < 2 or n_t < 2:
        return Comparison("welch_t", n_c, n_t, mean_c if n_c else None, mean_t if n_t else None, None, None,
                          None, None, None, None, "hedges_g", "needs at least 2 observations per side")
    se_c, se_t = var_c / n_c, var_t / n_t
    diff = mean_t - mean_c
    se = math.sqrt(se_c + se_t)
    relative, relative_ci = _relative(mean_t, mean_c, se_t, se_c, confidence)
    pooled = math.sqrt(((n_c - 1) * var_c + (n_t - 1) * var_t) / (n_c + n_t - 2))
    g = diff / pooled * (1 - 3 / (4 * (n_c + n_t) - 9)) if pooled > 0 else None
    if se == 0:
        return Comparison("welch_t", n_c, n_t, mean_c, mean_t, diff, (diff, diff), relative, relative_ci,
                          None if diff == 0 else 0.0, g, "hedges_g", "no variance on either side")
    df = (se_c + se_t) ** 2 / (se_c**2 / (n_c - 1) + se_t**2 / (n_t - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Comparison("welch_t", n_c, n_t, mean_c, mean_t, diff, (diff - half, diff + half), relative,
                      relative_ci, p, g, "hedges_g")


def two_proportions(k_c: int, n_c: int, k_t: int, n_t: int, confidence: float = 0.95,
                    alternative: str = "two-sided") -> Comparison:
    """Two-proportion z-test with the pooled variance (equal to Pearson's chi-square without
    continuity correction); Newcombe's hybrid score interval (his method 10, from Wilson
    intervals) for the difference; MOVER on the log scale from the same Wilson intervals for the
    relative difference (ratio_mover); Cohen's h."""
    if n_c == 0 or n_t == 0:
        return Comparison("two_proportion_z", n_c, n_t, k_c / n_c if n_c else None, k_t / n_t if n_t else None,
                          None, None, None, None, None, None, "cohens_h", "a side has no observations")
    p_c, p_t = k_c / n_c, k_t / n_t
    diff = p_t - p_c
    pooled = (k_c + k_t) / (n_c + n_t)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    if se0 == 0:
        p = None
    else:
        z = diff / se0
        p = float({"two-sided": 2 * stats.norm.sf(abs(z)), "greater": stats.norm.sf(z),
                   "less": stats.norm.cdf(z)}[alternative])
    l_c, u_c = wilson(k_c, n_c, confidence).ci
    l_t, u_t = wilson(k_t, n_t, confidence).ci
    ci = (diff - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2),
          diff + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2))
    relative = p_t / p_c - 1 if p_c > 0 else None
    ratio = ratio_mover(p_t, (l_t, u_t), p_c, (l_c, u_c)) if p_c > 0 else None
    relative_ci = (ratio[0] - 1, ratio[1] - 1) if ratio else None
    h = 2 * math.asin(math.sqrt(p_t)) - 2 * math.asin(math.sqrt(p_c))
    return Comparison("two_proportion_z", n_c, n_t, p_c, p_t, diff, ci, relative, relative_ci, p, h, "cohens_h")


def benjamini_hochberg(p_values: list[float | None]) -> list[float | None]:
    """BH-adjusted p-values (scipy's false_discovery_control); None stays None."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    if present:
        values = stats.false_discovery_control(np.array([p_values[i] for i in present], float), method="bh")
        for i, value in zip(present, values):
            adjusted[i] = float(value)
    return adjusted


@dataclass(frozen=True)
class SampleRatio:
    n_control: int
    n_treatment: int
    expected_treatment_share: float
    p_value: float | None
    mismatch: bool
    test: str = "chi_square_goodness_of_fit"


def sample_ratio_mismatch(n_c: int, n_t: int, expected_treatment_share: float = 0.5,
                          alpha: float = 0.001) -> SampleRatio:
    """Chi-square goodness of fit of the observed split to the expected one; a mismatch below
    alpha (conventionally 0.001) means the assignment, not the change, may explain a difference."""
    total = n_c + n_t
    if total == 0:
        return SampleRatio(n_c, n_t, expected_treatment_share, None, False)
    expected = [total * (1 - expected_treatment_share), total * expected_treatment_share]
    p = float(stats.chisquare([n_c, n_t], f_exp=expected).pvalue)
    return SampleRatio(n_c, n_t, expected_treatment_share, p, p < alpha)


# --- weights ----------------------------------------------------------------------------------


def kish_ess(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, float)
    total = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / total) if total > 0 else 0.0


def inverse_propensity_weights(population: dict[str, int], labelled: dict[str, int], trim_multiple: float = 20.0
                               ) -> dict[str, float]:
    """Per-group weight (N_g / N) / (F_g / F): each labelled request stands for its group's share of
    the population, so the weights have mean 1 over the labelled requests. Weights above
    trim_multiple times the mean are capped and all renormalised to mean 1, repeated until no
    weight exceeds the cap (renormalising after one cap can push the capped ones over again).
    Groups without labelled requests get no weight."""
    n, f = sum(population.values()), sum(labelled.get(g, 0) for g in population)
    if n == 0 or f == 0:
        return {}
    weights = {g: (population[g] / n) / (labelled[g] / f) for g in population if labelled.get(g, 0) > 0}
    for _ in range(100):
        if max(weights.values()) <= trim_multiple * (1 + 1e-12):
            break
        capped = {g: min(w, trim_multiple) for g, w in weights.items()}
        mean = sum(capped[g] * labelled[g] for g in capped) / f
        weights = {g: w / mean for g, w in capped.items()}
    return weights


def mean_and_variance(values: np.ndarray) -> tuple[int, float, float]:
    values = np.asarray(values, float)
    n = len(values)
    if n == 0:
        return 0, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return n, float(np.mean(values)), float(np.var(values, ddof=1)) if n > 1 else math.nan


# --- meta-evaluation: system-level and grouped correlation ----------------------------------------
CORRELATIONS = {"pearson": lambda x, y: stats.pearsonr(x, y).statistic,
                "spearman": lambda x, y: stats.spearmanr(x, y).statistic,
                "kendall": lambda x, y: stats.kendalltau(x, y, variant="b").statistic}


def _defined(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0


def _percentile_ci(draws: Any, confidence: float) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the draws (None without draws)."""
    if not len(draws):
        return None
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def exact_mean(values: np.ndarray) -> float:
    """The mean of the values as exact fractions, rounded once to a float: the same for any order."""
    return float(sum(map(Fraction, values.tolist()), Fraction(0)) / len(values))


def system_level(evaluator: np.ndarray, human: np.ndarray, system: np.ndarray, group: np.ndarray | None = None,
                 resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The correlation, over systems, of each system's mean evaluator score with its mean human
    score (SummEval's system-level correlation), with percentile bootstrap intervals over items:
    the groups (inputs) resampled when `group` is given (each system keeps its outputs for the
    drawn inputs: Deutsch et al. 2021's input resampling), else each system's items resampled
    apart. Needs 3 systems."""
    # one canonical order of the items, whatever order they came in: the bootstrap draws the same items
    order = np.lexsort((human, evaluator, *([np.asarray(group).astype(str)] if group is not None else []),
                        np.asarray(system).astype(str)))
    evaluator, human, system = evaluator[order], human[order], np.asarray(system)[order]
    group = np.asarray(group)[order] if group is not None else None
    names, codes = np.unique(system, return_inverse=True)
    result: dict[str, Any] = {"systems": len(names), "n": len(evaluator), "resamples": resamples,
                              "ci_method": "percentile bootstrap over " + ("inputs" if group is not None else
                                                                          "items within each system")}
    # exact means (the sum of the values as fractions, rounded once): systems whose means are equal
    # tie whatever order the sums would have met their values in
    means = [(exact_mean(evaluator[codes == k]), exact_mean(human[codes == k])) for k in range(len(names))]
    result["per_system"] = {str(name): {"n": int((codes == k).sum()), "evaluator_mean": e, "human_mean": h}
                            for k, (name, (e, h)) in enumerate(zip(names, means))}
    x, y = np.array([m[0] for m in means]), np.array([m[1] for m in means])
    if len(names) < 3 or not _defined(x, y):
        result.update({name: {"r": None, "ci": None} for name in CORRELATIONS})
        result["note"] = "needs at least 3 systems whose means differ"
        return result
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in CORRELATIONS}
    if group is not None:
        inputs, input_codes = np.unique(group, return_inverse=True)
        members = [np.flatnonzero(input_codes == i) for i in range(len(inputs))]
    else:
        members = [np.flatnonzero(codes == k) for k in range(len(names))]
    for _ in range(resamples):
        picked = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))]) \
            if group is not None else np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        counts = np.bincount(codes[picked], minlength=len(names))
        if (counts == 0).any():
            continue  # a system without items in this draw: no mean
        bx = np.bincount(codes[picked], weights=evaluator[picked], minlength=len(names)) / counts
        by = np.bincount(codes[picked], weights=human[picked], minlength=len(names)) / counts
        if _defined(bx, by):
            for name, correlation in CORRELATIONS.items():
                draws[name].append(float(correlation(bx, by)))
    for name, correlation in CORRELATIONS.items():
        result[name] = {"r": float(correlation(x, y)), "ci": _percentile_ci(draws[name], confidence)}
    result["resamples_used"] = len(draws["pearson"])
    return result


def grouped(evaluator: np.ndarray, human: np.ndarray, group: np.ndarray) -> dict[str, Any]:
    """The correlation within each group (a source prompt or document: the summary-level
    correlation of SummEval and UniEval), averaged over the groups where it is defined (at least 2
    items, neither score constant)."""
    names, codes = np.unique(group, return_inverse=True)
    per_group: dict[str, list[float]] = {name: [] for name in CORRELATIONS}
    used = items = 0
    for k in range(len(names)):
        x, y = evaluator[codes == k], human[codes == k]
        if not _defined(x, y):
            continue
        used += 1
        items += len(x)
        for name, correlation in CORRELATIONS.items():
            per_group[name].append(float(correlation(x, y)))
    result: dict[str, Any] = {"groups": len(names), "groups_used": used, "n": items,
                              "groups_skipped": len(names) - used}
    for name in CORRELATIONS:
        result[name] = float(np.mean(per_group[name])) if per_group[name] else None
    if not used:
        result["note"] = "no group has 2 items whose scores both vary"
    return result


# --- agreement between users who rate the same request ------------------------------------------
def _alpha_from_coincidences(o: np.ndarray, domain: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's alpha of each coincidence matrix o[b] (B x V x V), as the `krippendorff`
    package computes it from its coincidences: 1 - sum(o d) / sum(e d), e the random
    coincidences from the marginals n_v, d the interval or ordinal distance (the ordinal one from
    the same marginals). NaN where fewer than two values occur."""
    n_v = o.sum(axis=1)  # (B, V)
    e = (n_v[:, :, None] * n_v[:, None, :] - n_v[:, :, None] * np.eye(len(domain))) / (
        n_v.sum(axis=1)[:, None, None] - 1)
    if level == "interval":
        d = np.broadcast_to((domain[:, None] - domain[None, :]) ** 2, o.shape)
    else:  # ordinal: (sum of n_g from g = c to k - (n_c + n_k) / 2)^2
        low, high = np.minimum.outer(np.arange(len(domain)), np.arange(len(domain))), \
            np.maximum.outer(np.arange(len(domain)), np.arange(len(domain)))
        cumulative = np.concatenate([np.zeros((len(n_v), 1)), np.cumsum(n_v, axis=1)], axis=1)
        between = cumulative[:, high + 1] - cumulative[:, low]
        d = (between - (n_v[:, low] + n_v[:, high]) / 2) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1 - (o * d).sum(axis=(1, 2)) / (e * d).sum(axis=(1, 2))
    return np.where((n_v > 0).sum(axis=1) >= 2, alpha, np.nan)


def _resample_counts(rng: np.random.Generator, n: int, resamples: int, chunk: int = 100) -> Iterator[np.ndarray]:
    """How often each of n units is drawn in each resample (rows), `chunk` resamples at a time,
    from the same draws as `rng.integers(0, n, n)` once per resample."""
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        yield np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(rows)]).astype(float)


def krippendorff_alpha(units: list[tuple[float, ...]], level: str, resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Krippendorff's alpha (the `krippendorff` package) over units rated at least twice, with a
    percentile bootstrap interval over units. The bootstrap adds up each unit's coincidences
    (alpha depends on the data only through their sum), so a resample costs a matrix product, not a
    call of the package: equal to the package on the same resamples (tests/unit/test_stats.py).
    `level`: ordinal or interval."""
    import krippendorff

    # one canonical order of the units (each unit's votes sorted, then the units), whatever order they
    # came in: the bootstrap draws the same units
    units = sorted(tuple(sorted(u)) for u in units if len(u) >= 2)
    result: dict[str, Any] = {"level": level, "units": len(units), "values": sum(len(u) for u in units)}
    values = {v for u in units for v in u}
    if len(units) < 2 or len(values) < 2:
        return {**result, "alpha": None, "ci": None, "note": "needs 2 requests rated twice, and 2 different values"}
    domain = np.array(sorted(values))
    position = {v: i for i, v in enumerate(domain.tolist())}
    counts = np.zeros((len(units), len(domain)))
    for row, unit in enumerate(units):
        for v in unit:
            counts[row, position[v]] += 1
    per_unit = (counts[:, :, None] * counts[:, None, :] - counts[:, :, None] * np.eye(len(domain))) / (
        counts.sum(axis=1) - 1)[:, None, None]
    per_unit = per_unit.reshape(len(units), -1)
    point = float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level))
    rng = np.random.default_rng(seed)
    draws = np.concatenate([_alpha_from_coincidences((weights @ per_unit).reshape(-1, len(domain), len(domain)),
                                                     domain, level)
                            for weights in _resample_counts(rng, len(units), resamples)])
    return {**result, "alpha": point, "resamples": resamples,
            "ci": _percentile_ci(draws[~np.isnan(draws)].tolist(), confidence),
            "ci_method": "percentile bootstrap over requests"}


def as_another_annotator(units: list[tuple[float, ...]], evaluator: np.ndarray, resamples: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Whether the evaluator agrees with users as well as a user agrees with the others: for every
    vote of a request rated k >= 2 times, the mean of the request's other k - 1 votes; Pearson's r
    of the vote with that mean (a user against the others), and of the evaluator's score with the
    same mean (the evaluator against the same users), over the same pairs; their difference. A
    percentile bootstrap over requests gives each an interval."""
    # one canonical order of the requests (their votes sorted, then the evaluator's score), whatever
    # order they came in: the bootstrap draws the same requests
    rated = sorted((tuple(sorted(values)), float(overall)) for values, overall in zip(units, evaluator)
                   if values is not None and len(values) >= 2)
    unit_of, vote, others, score = [], [], [], []
    for k, (values, overall) in enumerate(rated):
        total = sum(values)
        for v in values:
            unit_of.append(k)
            vote.append(v)
            others.append((total - v) / (len(values) - 1))
            score.append(overall)
    result: dict[str, Any] = {"requests": len(set(unit_of)), "pairs": len(vote)}
    if result["requests"] < 3:
        return {**result, "user_vs_others": None, "evaluator_vs_others": None, "difference": None,
                "note": "needs 3 requests rated twice"}
    unit_of_a, vote_a, others_a, score_a = map(np.asarray, (unit_of, vote, others, score))
    if not (_defined(vote_a, others_a) and _defined(score_a, others_a)):  # nothing to resample
        return {**result, "user_vs_others": None, "evaluator_vs_others": None, "difference": None,
                "note": "the votes or the evaluator's scores do not vary"}
    point = (float(np.corrcoef(vote_a, others_a)[0, 1]), float(np.corrcoef(score_a, others_a)[0, 1]))
    # each request's sums over its pairs: a resample's correlations come from its requests' sums
    requests, unit_index = np.unique(unit_of_a, return_inverse=True)
    columns = np.stack([np.ones_like(vote_a), vote_a, others_a, score_a, vote_a**2, others_a**2, score_a**2,
                        vote_a * others_a, score_a * others_a], axis=1)
    per_request = np.zeros((len(requests), columns.shape[1]))
    np.add.at(per_request, unit_index, columns)
    rng = np.random.default_rng(seed)
    sums = np.concatenate([weights @ per_request for weights in _resample_counts(rng, len(requests), resamples)])
    n, v, o, e, vv, oo, ee, vo, eo = sums.T
    var_v, var_o, var_e = vv - v**2 / n, oo - o**2 / n, ee - e**2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        user = (vo - v * o / n) / np.sqrt(var_v * var_o)
        judge = (eo - e * o / n) / np.sqrt(var_e * var_o)
    # a resample where a variable does not vary has no correlation (rounding leaves ~1e-13, not 0)
    varies = (var_v > 1e-9 * vv) & (var_o > 1e-9 * oo) & (var_e > 1e-9 * ee)
    user, judge = user[varies], judge[varies]
    return {**result, "ci_method": "percentile bootstrap over requests", "resamples": resamples,
            "user_vs_others": {"r": point[0], "ci": _percentile_ci(user.tolist(), confidence)},
            "evaluator_vs_others": {"r": point[1], "ci": _percentile_ci(judge.tolist(), confidence)},
            "difference": {"r": point[1] - point[0], "ci": _percentile_ci((judge - user).tolist(), confidence)}}


# --- quality of all traffic: prediction-powered inference ----------------------------------------
@dataclass(frozen=True)
class PpiMean:
    estimate: float | None
    ci: tuple[float, float] | None
    se: float | None
    lam: float | None  # the power-tuning weight: 0 is the labelled mean, 1 plain PPI
    n_labelled: int
    n_unlabelled: int
    method: str = "ppi++ mean (Angelopoulos, Duchi and Zrnic 2023), lambda power-tuned and clipped to [0, 1]"
    note: str | None = None
    df: float | None = None  # degrees of freedom of a t interval; None: a normal interval


# labels in a cohort from which PPI++ takes its power-tuned lambda and a normal interval (as ppi_py);
# below, each label's lambda is cross-fitted and the interval is a t (ppi_mean_cross_fitted)
ASYMPTOTIC_FROM = 100


def ppi_mean(y: np.ndarray, yhat: np.ndarray, n_unlabelled: int, sum_unlabelled: float, squares_unlabelled: float,
             confidence: float = 0.95, lam: float | None = None) -> PpiMean:
    """PPI++ estimate of the mean of y over labelled and unlabelled items, from the labelled pairs
    (y, yhat) and the unlabelled predictions' count, sum and sum of squares: as ppi_py's
    ppi_mean_ci computes it (lambda = Cov(y, yhat) / ((1 + n/N) Var(yhat over both)), clipped to
    [0, 1]; se from the imputed and the rectifier parts; a normal interval). A given `lam` is used
    as it is (0: the labelled mean alone, with the same interval arithmetic)."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    n, big_n = len(y), n_unlabelled
    if n < 2 or big_n < 1:
        return PpiMean(None, None, None, None, n, big_n, note="needs 2 labelled and 1 unlabelled request")
    covariance = float(np.mean((y - y.mean()) * (yhat - yhat.mean())))
    total, squares, count = float(yhat.sum()) + sum_unlabelled, float((yhat**2).sum()) + squares_unlabelled, n + big_n
    variance = max((squares - total**2 / count) / (count - 1), 0.0)
    if lam is None:
        lam = 0.0 if variance == 0 else min(max(covariance / ((1 + n / big_n) * variance), 0.0), 1.0)
    unlabelled_mean = sum_unlabelled / big_n
    estimate = lam * unlabelled_mean + float(np.mean(y - lam * yhat))
    imputed = lam * math.sqrt(max(squares_unlabelled / big_n - unlabelled_mean**2, 0.0)) / math.sqrt(big_n)
    rectifier = float(np.std(y - lam * yhat)) / math.sqrt(n)
    se = math.sqrt(imputed**2 + rectifier**2)
    half = _z(confidence) * se
    return PpiMean(estimate, (estimate - half, estimate + half), se, lam, n, big_n)


def ppi_mean_cross_fitted(y: np.ndarray, yhat: np.ndarray, n_unlabelled: int, sum_unlabelled: float,
                          squares_unlabelled: float, confidence: float = 0.95, lam: float | None = None) -> PpiMean:
    """PPI++ of the mean for few labels, where the power-tuned lambda and the normal interval are
    too optimistic (a lambda fitted on the same labels it weights shrinks the apparent variance):
    each labelled pair i gets lambda_i fitted as ppi_mean does but without pair i (leave-one-out
    cross-fitting, so no label chooses its own weight; closed form from the sums), the estimate is
    mean(y_i - lambda_i yhat_i) + mean(lambda_i) x mean(yhat unlabelled), unbiased whatever the
    lambdas; the variances divide by n - 1 and N - 1, and the interval is a t with the
    Welch-Satterthwaite degrees of freedom of the two parts. A given `lam` is every pair's lambda."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    n, big_n = len(y), n_unlabelled
    if n < 3 or big_n < 2:
        return PpiMean(None, None, None, None, n, big_n, note="needs 3 labelled and 2 unlabelled requests")
    if lam is None:
        m = n - 1  # the other labelled pairs
        mean_y, mean_hat = (y.sum() - y) / m, (yhat.sum() - yhat) / m
        covariance = (float((y * yhat).sum()) - y * yhat) / m - mean_y * mean_hat
        total = float(yhat.sum()) + sum_unlabelled - yhat
        squares = float((yhat**2).sum()) + squares_unlabelled - yhat**2
        count = n + big_n - 1
        variance = np.maximum((squares - total**2 / count) / (count - 1), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            tuned = covariance / ((1 + m / big_n) * variance)
        lams = np.where(variance > 0, np.clip(np.nan_to_num(tuned, nan=0.0), 0.0, 1.0), 0.0)
    else:
        lams = np.full(n, float(lam))
    unlabelled_mean = sum_unlabelled / big_n
    residual = y - lams * yhat
    mean_lam = float(lams.mean())
    estimate = float(residual.mean()) + mean_lam * unlabelled_mean
    rectifier = float(residual.var(ddof=1)) / n
    unlabelled_variance = max((squares_unlabelled - big_n * unlabelled_mean**2) / (big_n - 1), 0.0)
    imputed = mean_lam**2 * unlabelled_variance / big_n
    se = math.sqrt(rectifier + imputed)
    parts = [(rectifier, n - 1), (imputed, big_n - 1)]
    df = welch_satterthwaite(parts)
    half = _critical(confidence, df) * se
    return PpiMean(estimate, (estimate - half, estimate + half), se, mean_lam, n, big_n,
                   method="ppi++ mean, lambda cross-fitted (leave one out) for few labels, t interval", df=df)


def welch_satterthwaite(parts: list[tuple[float, float]]) -> float | None:
    """Degrees of freedom of a sum of independent variance estimates (variance, its df):
    (sum v)^2 / sum(v^2 / df); None when every part's df is infinite (a normal reference) or the sum is 0."""
    total = sum(v for v, _ in parts)
    spread = sum(v * v / df for v, df in parts if math.isfinite(df) and df > 0)
    if total <= 0 or spread <= 0:
        return None
    return total * total / spread


@dataclass(frozen=True)
class Stratum:
    """One stratum (a cohort) of a stratified PPI++ mean: its labelled pairs and all its requests'
    count, sum and sum of squares of the prediction (labelled ones included)."""

    y: np.ndarray
    yhat: np.ndarray
    requests: int
    total: float
    squares: float


def stratified_ppi_mean(strata: dict[str, Stratum], confidence: float = 0.95, lam: float | None = None
                        ) -> dict[str, Any]:
    """PPI++ of the mean within each stratum, combined by the strata's shares of the requests:
    sum_k (N_k / N) m_k, variance sum_k (N_k / N)^2 se_k^2 (the strata are independent). A stratum
    with ASYMPTOTIC_FROM labels or more uses ppi_mean (power-tuned lambda, normal theory: ppi_py's);
    one with fewer, ppi_mean_cross_fitted; the interval is then a t whose degrees of freedom are the
    Welch-Satterthwaite combination of the strata's parts (`df`; None for a normal interval, when
    every stratum is large). A stratum whose every request is labelled contributes its labelled mean;
    one without enough labels leaves the estimate undefined and is named (`cohorts_without_labels`).
    With `lam` = 0: the labels alone, re-weighted the same way (what the evaluator's scores add is the
    difference). `parts`: each stratum's (share^2 x variance, df), for a difference of two such means."""
    total_requests = sum(s.requests for s in strata.values())
    per_stratum: dict[str, Any] = {}
    missing = []
    combined, parts = 0.0, []
    for name in sorted(strata):
        s = strata[name]
        y, yhat = np.asarray(s.y, float), np.asarray(s.yhat, float)
        small = len(y) < ASYMPTOTIC_FROM
        estimate = (ppi_mean_cross_fitted if small else ppi_mean)(
            y, yhat, s.requests - len(y), s.total - float(yhat.sum()), s.squares - float((yhat**2).sum()),
            confidence, lam)
        if estimate.estimate is None and len(y) >= 2 and s.requests == len(y):  # all labelled
            estimate = PpiMean(float(y.mean()), None, float(y.std(ddof=1)) / math.sqrt(len(y)), 0.0, len(y), 0,
                               note="every request labelled", df=float(len(y) - 1) if small else None)
        share = s.requests / total_requests
        per_stratum[name] = {**asdict(estimate), "requests": s.requests, "share": share}
        if estimate.estimate is None:
            missing.append(name)
        else:
            combined += share * estimate.estimate
            parts.append((share**2 * estimate.se**2, estimate.df if estimate.df is not None else math.inf))
    if missing or not strata:
        return {"estimate": None, "ci": None, "se": None, "df": None, "parts": [], "cohorts_without_labels": missing,
                "by_cohort": per_stratum}
    se = math.sqrt(sum(v for v, _ in parts))
    df = welch_satterthwaite(parts)
    half = _critical(confidence, df) * se
    return {"estimate": combined, "ci": (combined - half, combined + half), "se": se, "df": df, "parts": parts,
            "cohorts_without_labels": missing, "by_cohort": per_stratum}


def _critical(confidence: float, df: float | None) -> float:
    """The two-sided critical value: Student's t with df degrees of freedom, the normal's without."""
    return _z(confidence) if df is None else float(stats.t.ppf(0.5 + confidence / 2, df))


def normal_difference(mean_c: float | None, se_c: float | None, n_c: int, mean_t: float | None, se_t: float | None,
                      n_t: int, confidence: float = 0.95, test: str = "z", df: float | None = None) -> Comparison:
    """Treatment minus control from two independent, asymptotically normal estimates and their
    standard errors: a z-test and a normal interval, or with `df` a t-test and t interval with those
    degrees of freedom (small samples); the relative difference by the delta method."""
    if mean_c is None or mean_t is None or se_c is None or se_t is None:
        return Comparison(test, n_c, n_t, mean_c, mean_t, None, None, None, None, None, None, "none",
                          "no estimate on one side")
    diff = mean_t - mean_c
    se = math.hypot(se_c, se_t)
    relative, relative_ci = _relative(mean_t, mean_c, se_t**2, se_c**2, confidence)
    if se == 0:
        return Comparison(test, n_c, n_t, mean_c, mean_t, diff, (diff, diff), relative, relative_ci,
                          None if diff == 0 else 0.0, None, "none", "no uncertainty on either side")
    half = _critical(confidence, df) * se
    reference = stats.norm if df is None else stats.t(df)
    p = float(2 * reference.sf(abs(diff) / se))
    return Comparison(test, n_c, n_t, mean_c, mean_t, diff, (diff - half, diff + half), relative, relative_ci, p,
                      None, "none")


@dataclass(frozen=True)
class CorrectedRate:
    estimate: float | None
    ci: tuple[float, float] | None
    observed: float | None  # the judge's share of "good" verdicts over every request
    sensitivity: float | None  # P(judge good | human good), on the labelled requests
    specificity: float | None  # P(judge bad | human bad)
    n_requests: int
    n_good: int
    n_bad: int
    method: str = "Rogan-Gladen, delta-method interval over the verdict rate, sensitivity and specificity"
    note: str | None = None


def rogan_gladen(good_verdicts: int, requests: int, true_positives: int, n_good: int, true_negatives: int,
                 n_bad: int, confidence: float = 0.95) -> CorrectedRate:
    """The share of good answers from a binary judge's verdict rate q over every request, corrected
    with its sensitivity e and specificity s measured against human labels (Rogan and Gladen 1978):
    (q + s - 1) / (e + s - 1), clipped to [0, 1]; its variance by the delta method carries the
    uncertainty of all three: [q(1-q)/N + t^2 e(1-e)/n_good + (1-t)^2 s(1-s)/n_bad] / (e + s - 1)^2."""
    if not requests or not n_good or not n_bad:
        return CorrectedRate(None, None, good_verdicts / requests if requests else None, None, None, requests, n_good,
                             n_bad, note="needs requests, and human labels of both kinds")
    q, e, s = good_verdicts / requests, true_positives / n_good, true_negatives / n_bad
    youden = e + s - 1
    if youden <= 0:
        return CorrectedRate(None, None, q, e, s, requests, n_good, n_bad,
                             note="the judge is no better than chance (sensitivity + specificity <= 1)")
    raw = (q + s - 1) / youden
    variance = (q * (1 - q) / requests + raw**2 * e * (1 - e) / n_good
                + (1 - raw) ** 2 * s * (1 - s) / n_bad) / youden**2
    half = _z(confidence) * math.sqrt(variance)

    def clip(value: float) -> float:
        return min(max(value, 0.0), 1.0)

    # the estimate and both ends clipped alike: the interval stays ordered and holds its estimate
    note = None if 0.0 <= raw <= 1.0 else (
        f"the corrected value {raw:.3f} fell outside [0, 1] and was clipped: the judge's sensitivity and "
        "specificity on the labelled requests do not hold over all traffic")
    return CorrectedRate(clip(raw), (clip(raw - half), clip(raw + half)), q, e, s, requests, n_good, n_bad,
                         note=note)
