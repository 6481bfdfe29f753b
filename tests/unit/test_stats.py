"""Every statistic of the report against an independent computation or a published value."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, cohen_kappa_score, roc_auc_score
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from feedback_loop.analysis import stats


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261127)


def correlated(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=n)
    return x, rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)


def test_pearson_matches_scipy_and_the_fisher_interval(rng) -> None:
    x, y = correlated(rng, 200, 0.5)
    result = stats.pearson(x, y)
    reference = sps.pearsonr(x, y)
    assert result.r == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    low, high = reference.confidence_interval(0.95)  # scipy's own Fisher-z interval
    assert result.ci == pytest.approx((low, high))
    z = np.arctanh(result.r)
    assert result.ci == pytest.approx((np.tanh(z - 1.959964 / math.sqrt(197)), np.tanh(z + 1.959964 / math.sqrt(197))))


def test_spearman_and_kendall_tau_b_match_scipy_with_ties(rng) -> None:
    x = rng.integers(1, 6, 150).astype(float)  # ratings: many ties
    y = x + rng.normal(scale=1.5, size=150)
    s, k = stats.spearman(x, y), stats.kendall_tau_b(x, y)
    ref_s, ref_k = sps.spearmanr(x, y), sps.kendalltau(x, y, variant="b")
    assert (s.r, s.p_value) == pytest.approx((ref_s.statistic, ref_s.pvalue))
    assert (k.r, k.p_value) == pytest.approx((ref_k.statistic, ref_k.pvalue))
    # tau-b by its definition, counted pair by pair
    concordant = discordant = ties_x = ties_y = 0
    for i in range(150):
        dx, dy = np.sign(x[i] - x[i + 1:]), np.sign(y[i] - y[i + 1:])
        concordant += int(np.sum(dx * dy > 0))
        discordant += int(np.sum(dx * dy < 0))
        ties_x += int(np.sum((dx == 0) & (dy != 0)))
        ties_y += int(np.sum((dy == 0) & (dx != 0)))
    tau_b = (concordant - discordant) / math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    assert k.r == pytest.approx(tau_b)
    assert s.ci[0] < s.r < s.ci[1] and k.ci[0] < k.r < k.ci[1]
    se = math.sqrt((1 + s.r**2 / 2) / 147)
    assert s.ci == pytest.approx((math.tanh(math.atanh(s.r) - 1.959964 * se), math.tanh(math.atanh(s.r) + 1.959964 * se)))


def test_correlation_intervals_cover_the_truth_at_about_95_percent(rng) -> None:
    covered = {"pearson": 0, "spearman": 0}
    truth_spearman = 6 / math.pi * math.asin(0.4 / 2)  # bivariate normal
    trials = 400
    for _ in range(trials):
        x, y = correlated(rng, 60, 0.4)
        p, s = stats.pearson(x, y), stats.spearman(x, y)
        covered["pearson"] += p.ci[0] <= 0.4 <= p.ci[1]
        covered["spearman"] += s.ci[0] <= truth_spearman <= s.ci[1]
    for method, hits in covered.items():
        assert 0.92 <= hits / trials <= 0.98, method


def test_degenerate_correlations_are_inconclusive_not_errors() -> None:
    assert stats.pearson(np.ones(10), np.arange(10)).r is None
    assert "constant" in stats.spearman(np.ones(10), np.arange(10)).note
    assert stats.kendall_tau_b(np.arange(3), np.arange(3)).note == "needs at least 5 pairs"


def test_weighted_pearson_equals_pearson_on_replicated_rows(rng) -> None:
    x, y = correlated(rng, 50, 0.3)
    w = rng.integers(1, 4, 50)
    replicated = stats.pearson(np.repeat(x, w), np.repeat(y, w))
    weighted = stats.weighted_pearson(x, y, w.astype(float))
    assert weighted.r == pytest.approx(replicated.r)
    unit = stats.weighted_pearson(x, y, np.ones(50))
    assert unit.r == pytest.approx(stats.pearson(x, y).r)
    assert unit.ci == pytest.approx(stats.pearson(x, y).ci)


def test_auroc_matches_sklearn_and_pairwise_counting(rng) -> None:
    labels = rng.random(300) < 0.4
    scores = np.round(rng.random(300) * 0.6 + labels * 0.3, 2)  # rounded: ties
    result = stats.auroc(scores, labels)
    assert result.auroc == pytest.approx(roc_auc_score(labels, scores))
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert result.auroc == pytest.approx(pairs / (len(pos) * len(neg)))
    assert (result.n_positive, result.n_negative) == (labels.sum(), (~labels).sum())
    assert result.ci[0] < result.auroc < result.ci[1]
    assert stats.auroc(scores, np.ones(300, bool)).auroc is None


def test_auroc_interval_covers_the_binormal_truth(rng) -> None:
    """Positives ~ N(1, 1), negatives ~ N(0, 1): the true AUC is Phi(1 / sqrt(2))."""
    truth = sps.norm.cdf(1 / math.sqrt(2))
    trials, hits = 400, 0
    for _ in range(trials):
        scores = np.concatenate([rng.normal(1, 1, 60), rng.normal(0, 1, 90)])
        labels = np.arange(150) < 60
        ci = stats.auroc(scores, labels).ci
        hits += ci[0] <= truth <= ci[1]
    assert 0.92 <= hits / trials <= 0.98


def test_cohen_kappa_matches_sklearn(rng) -> None:
    a = rng.random(500) < 0.6
    b = np.where(rng.random(500) < 0.8, a, ~a)
    result = stats.cohen_kappa(a, b)
    assert result.kappa == pytest.approx(cohen_kappa_score(a, b))
    assert result.ci[0] < result.kappa < result.ci[1]


def test_calibration_matches_sklearn_reliability_curve_and_brier(rng) -> None:
    p = rng.random(1000)
    p[:5] = 1.0  # the upper edge belongs to the last bin
    y = rng.random(1000) < p**1.5
    result = stats.calibration(p, y)
    assert result.brier == pytest.approx(brier_score_loss(y, p))
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    filled = [b for b in result.bins if b.n]
    assert [b.observed_rate for b in filled] == pytest.approx(prob_true)
    assert [b.mean_predicted for b in filled] == pytest.approx(prob_pred)
    counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    assert result.ece == pytest.approx(float(np.sum(counts / 1000 * np.abs(prob_true - prob_pred))))
    assert sum(b.n for b in result.bins) == 1000
    perfect = stats.calibration(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1]))
    assert (perfect.ece, perfect.brier) == (0.0, 0.0)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 1000), (1, 1)])
def test_wilson_interval_matches_its_closed_form_and_statsmodels(k: int, n: int) -> None:
    result = stats.wilson(k, n)
    z, p = 1.959963984540054, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert result.ci == pytest.approx((centre - half, centre + half))
    assert result.ci == pytest.approx(proportion_confint(k, n, method="wilson"))
    assert stats.wilson(0, 0).rate is None


def test_two_proportions_match_chi_square_statsmodels_and_newcombes_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873-890, example (a): 56/70 vs 48/80,
    # method 10 (hybrid score) interval for the difference: 0.0524 to 0.3339.
    result = stats.two_proportions(48, 80, 56, 70)
    assert result.diff == pytest.approx(0.2)
    assert result.diff_ci == pytest.approx((0.0524, 0.3339), abs=1e-4)
    chi2 = sps.chi2_contingency(np.array([[56, 14], [48, 32]]), correction=False)
    assert result.p_value == pytest.approx(chi2.pvalue)
    z, p = proportions_ztest([56, 48], [70, 80])
    assert result.p_value == pytest.approx(p)
    assert result.effect_size == pytest.approx(2 * math.asin(math.sqrt(0.8)) - 2 * math.asin(math.sqrt(0.6)))
    one_sided = stats.two_proportions(48, 80, 56, 70, alternative="greater")
    assert one_sided.p_value == pytest.approx(proportions_ztest([56, 48], [70, 80], alternative="larger")[1])


def test_welch_from_sufficient_statistics_matches_scipy_on_raw_data(rng) -> None:
    control, treatment = rng.normal(0.5, 0.2, 80), rng.normal(0.58, 0.3, 120)
    result = stats.welch(len(control), control.mean(), control.var(ddof=1),
                         len(treatment), treatment.mean(), treatment.var(ddof=1))
    reference = sps.ttest_ind(treatment, control, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.diff_ci == pytest.approx(tuple(reference.confidence_interval(0.95)))
    pooled = math.sqrt((79 * control.var(ddof=1) + 119 * treatment.var(ddof=1)) / 198)
    assert result.effect_size == pytest.approx((treatment.mean() - control.mean()) / pooled * (1 - 3 / (4 * 200 - 9)))
    # delta method: gradient of mt / mc - 1 is (1 / mc, -mt / mc^2)
    grad = np.array([1 / control.mean() * 0 + 1 / control.mean(), -treatment.mean() / control.mean() ** 2])
    cov = np.diag([treatment.var(ddof=1) / 120, control.var(ddof=1) / 80])
    se = math.sqrt(grad @ cov @ grad)
    assert result.relative == pytest.approx(treatment.mean() / control.mean() - 1)
    assert result.relative_ci == pytest.approx((result.relative - 1.959964 * se, result.relative + 1.959964 * se))


def test_welch_and_relative_intervals_cover_the_truth(rng) -> None:
    hits_diff = hits_relative = 0
    trials = 400
    for _ in range(trials):
        c, t = rng.normal(1.0, 0.5, 200), rng.normal(1.1, 0.8, 150)
        r = stats.welch(200, c.mean(), c.var(ddof=1), 150, t.mean(), t.var(ddof=1))
        hits_diff += r.diff_ci[0] <= 0.1 <= r.diff_ci[1]
        hits_relative += r.relative_ci[0] <= 0.1 <= r.relative_ci[1]
    assert 0.92 <= hits_diff / trials <= 0.98
    assert 0.92 <= hits_relative / trials <= 0.98


def test_welch_edge_cases() -> None:
    assert stats.welch(1, 0.5, math.nan, 10, 0.4, 0.01).p_value is None
    same = stats.welch(5, 0.5, 0.0, 5, 0.5, 0.0)
    assert same.diff == 0 and same.p_value is None


def test_benjamini_hochberg_matches_statsmodels(rng) -> None:
    p = list(rng.random(20) ** 3)
    adjusted = stats.benjamini_hochberg(p[:10] + [None] + p[10:])
    expected = multipletests(p, method="fdr_bh")[1]
    assert adjusted[10] is None
    assert adjusted[:10] + adjusted[11:] == pytest.approx(list(expected))


def test_sample_ratio_mismatch() -> None:
    assert not stats.sample_ratio_mismatch(5000, 5050).mismatch
    flagged = stats.sample_ratio_mismatch(5000, 5600)
    assert flagged.mismatch
    assert flagged.p_value == pytest.approx(sps.chisquare([5000, 5600]).pvalue)
    assert not stats.sample_ratio_mismatch(2000, 8000, expected_treatment_share=0.8).mismatch


def test_kish_ess_and_inverse_propensity_weights() -> None:
    assert stats.kish_ess(np.ones(10)) == pytest.approx(10)
    assert stats.kish_ess(np.array([1.0, 0, 0])) == pytest.approx(1)
    population = {"free": 8000, "pro": 1500, "enterprise": 500}
    labelled = {"free": 80, "pro": 150, "enterprise": 100}
    w = stats.inverse_propensity_weights(population, labelled)
    # mean 1 over labelled requests, and each group's labelled weight equals its population share
    assert sum(w[g] * labelled[g] for g in w) / sum(labelled.values()) == pytest.approx(1)
    total_w = sum(w[g] * labelled[g] for g in w)
    for g in population:
        assert w[g] * labelled[g] / total_w == pytest.approx(population[g] / 10_000)
    counts = {"a": 1, "b": 100}
    trimmed = stats.inverse_propensity_weights({"a": 100_000, "b": 100}, counts, trim_multiple=20)
    mean = sum(trimmed[g] * n for g, n in counts.items()) / 101
    assert mean == pytest.approx(1)
    assert trimmed["a"] == pytest.approx(20 * mean)  # capped exactly at the multiple of the final mean
    assert stats.inverse_propensity_weights({"a": 5}, {}) == {}


def _brute_concordance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([np.sum(np.sign(x[i] - x) * np.sign(y[i] - y)) for i in range(len(x))])


@pytest.mark.parametrize("kind", ["ratings", "continuous with ties"])
def test_each_observations_concordance_counts_every_pair(rng, kind) -> None:
    """Both ways of counting (the table of values, and the sweep for many distinct values) equal
    the count over every pair; their half-sum is scipy's tau-b numerator."""
    if kind == "ratings":
        x = rng.integers(1, 6, 400).astype(float)
        y = np.round(x / 2 + rng.normal(0, 1, 400) * 3) / 3
    else:  # more distinct pairs of values than the table takes: the sweep
        x = rng.normal(size=2500)
        x[:300] = x[300:600]
        y = np.round(x + rng.normal(size=2500), 3)
        y[:100] = y[1000:1100]
        assert len(np.unique(x)) * len(np.unique(y)) > 4_000_000
    assert np.array_equal(stats.concordance(x, y), _brute_concordance(x, y))


def test_the_tau_b_standard_error_agrees_with_the_jackknife_on_tied_ratings(rng) -> None:
    """An independent estimate of the same variance: the jackknife of scipy's tau-b."""
    n = 300
    latent = rng.normal(size=n)
    human = np.digitize(0.6 * latent + 0.8 * rng.normal(size=n), [-1.2, -0.4, 0.3, 1.0]) + 1.0
    judge = np.mean([np.digitize(0.7 * latent + 0.71 * rng.normal(size=n), [-1.0, -0.3, 0.4, 1.1])
                     for _ in range(3)], axis=0)
    leave_one_out = np.array([sps.kendalltau(np.delete(human, i), np.delete(judge, i)).statistic for i in range(n)])
    jackknife = math.sqrt((n - 1) / n * np.sum((leave_one_out - leave_one_out.mean()) ** 2))
    assert stats.tau_b_se(human, judge) == pytest.approx(jackknife, rel=0.05)


def _tied_design(name: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Human ratings and evaluator scores from a latent quality, with the ties of real ratings."""
    latent = rng.normal(size=n)
    def rating(weight: float, edges: list[float]) -> np.ndarray:
        return np.digitize(weight * latent + math.sqrt(1 - weight**2) * rng.normal(size=n), edges) + 1.0
    if name == "1-5 vs judge averaged over 3 tries":  # 13 distinct judge values, as the issue's
        return rating(0.6, [-1.2, -0.4, 0.3, 1.0]), np.mean([rating(0.7, [-1.0, -0.3, 0.4, 1.1]) for _ in range(3)], 0)
    if name == "1-5 vs 1-5, most answers 5":
        return rating(0.75, [-1.8, -1.2, -0.6, 0.0]), rating(0.75, [-1.5, -1.0, -0.5, 0.2])
    if name == "thumbs vs 1-5":
        return rating(0.6, [0.3]), rating(0.7, [-1.0, -0.3, 0.4, 1.1])
    return rating(0.6, [-1.2, -0.4, 0.3, 1.0]), 0.5 * latent + rng.normal(size=n)  # 1-5 vs a continuous metric


@pytest.mark.parametrize("name, n", [("1-5 vs judge averaged over 3 tries", 150), ("1-5 vs 1-5, most answers 5", 100),
                                     ("thumbs vs 1-5", 200), ("1-5 vs a continuous metric", 150),
                                     ("1-5 vs judge averaged over 3 tries", 40)])
def test_the_tau_b_interval_covers_95_percent_on_tied_scores(name, n) -> None:
    """Coverage of the 95% interval over 1,000 samples, around the tau-b of 400,000 draws of the
    same design. The constant Fieller-Hartley-Pearson se covered 85-92% on these designs."""
    truth = sps.kendalltau(*_tied_design(name, np.random.default_rng(12345), 400_000)).statistic
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(1000):
        low, high = stats.kendall_tau_b(*_tied_design(name, rng, n)).ci
        covered += low <= truth <= high
    assert 0.93 <= covered / 1000 <= 0.97, covered


def test_the_relative_interval_of_two_full_proportions_has_the_width_of_their_intervals() -> None:
    """96/96 against 96/96: the difference's interval is about +-0.038; the relative difference's
    was [0, 0] (the delta method's variance p(1 - p)/n is zero at 100%). MOVER on the log scale
    gives [l - 1, 1/l - 1] there, l the Wilson lower bound of 96/96."""
    result = stats.two_proportions(96, 96, 96, 96)
    low, _ = proportion_confint(96, 96, method="wilson")
    assert result.relative == 0 and result.relative_ci == pytest.approx((low - 1, 1 / low - 1))
    assert result.relative_ci[1] - result.relative_ci[0] > 0.07


@pytest.mark.parametrize("k_c, n_c, k_t, n_t", [(40, 100, 55, 100), (90, 120, 100, 110), (5, 80, 12, 90)])
def test_the_relative_interval_is_close_to_the_score_interval_of_the_ratio(k_c, n_c, k_t, n_t) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep

    result = stats.two_proportions(k_c, n_c, k_t, n_t)
    low, high = confint_proportions_2indep(k_t, n_t, k_c, n_c, method="score", compare="ratio")
    assert result.relative_ci == pytest.approx((low - 1, high - 1), abs=0.03)


@pytest.mark.parametrize("p_c, p_t", [(0.5, 0.6), (0.9, 0.95), (0.97, 0.99)])
def test_the_relative_interval_covers_95_percent_near_and_far_from_100_percent(p_c, p_t) -> None:
    rng = np.random.default_rng(11)
    truth = p_t / p_c - 1
    covered = sum(low <= truth <= high for low, high in (
        stats.two_proportions(int(rng.binomial(150, p_c)), 150, int(rng.binomial(150, p_t)), 150).relative_ci
        for _ in range(2000)))
    assert 0.93 <= covered / 2000 <= 0.97, covered


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the worked example: 4 coders,
# 12 units, missing values; published: ordinal 0.815, interval 0.849.
_KRIPPENDORFF_2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
                      [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
                      [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
                      [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]


def _units(coders: list[list[float | None]]) -> list[tuple[float, ...]]:
    return [tuple(float(c[u]) for c in coders if c[u] is not None) for u in range(len(coders[0]))]


def _interval_alpha(units: list[tuple[float, ...]]) -> float:
    """Krippendorff's alpha for interval data from its definition: 1 - D_o / D_e, over pairable values."""
    units = [u for u in units if len(u) >= 2]
    values = [v for u in units for v in u]
    n = len(values)
    observed = sum(sum((a - b) ** 2 for i, a in enumerate(u) for j, b in enumerate(u) if i != j) / (len(u) - 1)
                   for u in units) / n
    expected = sum((a - b) ** 2 for a in values for b in values) / (n * (n - 1))
    return 1 - observed / expected


def test_krippendorffs_alpha_gives_the_published_values_of_his_worked_example() -> None:
    units = _units(_KRIPPENDORFF_2011)
    assert stats.krippendorff_alpha(units, "ordinal", resamples=10)["alpha"] == pytest.approx(0.815, abs=5e-4)
    interval = stats.krippendorff_alpha(units, "interval", resamples=10)
    assert interval["alpha"] == pytest.approx(0.849, abs=5e-4)
    assert interval["alpha"] == pytest.approx(_interval_alpha(units), abs=1e-12)
    assert interval["units"] == 11  # the unit with one value pairs with nothing


def test_krippendorffs_alpha_on_tied_ratings_equals_its_definition_and_its_interval_covers(rng) -> None:
    latent = rng.normal(size=300)
    units = [tuple(float(np.clip(np.round(2.5 + 1.2 * z + rng.normal(0, 0.8)), 0, 4)) / 4
                   for _ in range(int(rng.integers(2, 5)))) for z in latent]
    result = stats.krippendorff_alpha(units, "interval")
    assert result["alpha"] == pytest.approx(_interval_alpha(units), abs=1e-12)
    low, high = result["ci"]
    assert low < result["alpha"] < high and high - low < 0.15


@pytest.mark.parametrize("level", ["ordinal", "interval"])
def test_the_bootstrap_of_alpha_equals_the_package_on_each_resample(rng, level) -> None:
    """The bootstrap adds up the units' coincidences instead of calling the package per resample:
    on the same resamples (the same seed), every draw equals krippendorff.alpha on the resampled
    units, and the interval is the percentiles of those."""
    import krippendorff

    units = [tuple(float(v) for v in rng.integers(0, 5, int(rng.integers(2, 4))) / 4) for _ in range(60)]
    result = stats.krippendorff_alpha(units, level, resamples=50, seed=3)
    shuffled = [tuple(reversed(u)) for u in units[::-1]]
    assert stats.krippendorff_alpha(shuffled, level, resamples=50, seed=3) == result  # any order: the same
    units = sorted(tuple(sorted(u)) for u in units)  # the canonical order the bootstrap draws from
    draw = np.random.default_rng(3)
    expected = []
    for _ in range(50):
        picked = [units[i] for i in draw.integers(0, len(units), len(units))]
        matrix = np.full((3, len(picked)), np.nan)
        for column, values in enumerate(picked):
            matrix[:len(values), column] = values
        expected.append(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level,
                                           value_domain=sorted({v for u in units for v in u})))
    assert result["ci"] == pytest.approx(tuple(np.percentile(expected, [2.5, 97.5])), abs=1e-12)


def test_the_evaluator_is_set_beside_the_users_as_another_annotator(rng) -> None:
    """An evaluator that rates like one more user agrees with the others as a user does (the
    difference's interval holds 0); one that sees only noise agrees less (it lies below 0). The
    point figures equal numpy's correlations over the same pairs."""
    latent = rng.normal(size=400)
    def rate(z: np.ndarray) -> np.ndarray:
        return np.clip(np.round(2 + 1.2 * z + rng.normal(0, 0.9, z.shape)), 0, 4) / 4
    votes = [tuple(rate(np.full(3, z))) for z in latent]
    like_a_user = rate(latent)
    same = stats.as_another_annotator(votes, like_a_user, resamples=400)
    low, high = same["difference"]["ci"]
    assert low < 0 < high
    vote = np.array([v for u in votes for v in u])
    others = np.array([(sum(u) - v) / 2 for u in votes for v in u])
    assert same["user_vs_others"]["r"] == pytest.approx(np.corrcoef(vote, others)[0, 1], abs=1e-12)
    assert same["evaluator_vs_others"]["r"] == pytest.approx(
        np.corrcoef(np.repeat(like_a_user, 3), others)[0, 1], abs=1e-12)
    noise = stats.as_another_annotator(votes, rng.random(400), resamples=400)
    assert noise["difference"]["ci"][1] < 0
    # the bootstrap from the requests' sums: each resample's correlations as numpy's on its pairs,
    # the requests in their canonical order (votes sorted, then the evaluator's score), any order in
    few = stats.as_another_annotator(votes, like_a_user, resamples=30, seed=5)
    assert stats.as_another_annotator([tuple(reversed(u)) for u in votes[::-1]], like_a_user[::-1],
                                      resamples=30, seed=5) == few
    canonical = sorted(zip((tuple(sorted(u)) for u in votes), like_a_user.tolist()))
    votes, like_a_user = [u for u, _ in canonical], np.array([e for _, e in canonical])
    draw, draws = np.random.default_rng(5), []
    for _ in range(30):
        picked = draw.integers(0, 400, 400)
        v = np.concatenate([votes[k] for k in picked])
        o = np.concatenate([[(sum(votes[k]) - x) / 2 for x in votes[k]] for k in picked])
        e = np.repeat(like_a_user[picked], 3)
        draws.append((np.corrcoef(v, o)[0, 1], np.corrcoef(e, o)[0, 1]))
    assert few["difference"]["ci"] == pytest.approx(
        tuple(np.percentile([d[1] - d[0] for d in draws], [2.5, 97.5])), abs=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_ppi_mean_equals_the_authors_implementation(seed) -> None:
    """ppi_py (Angelopoulos et al.'s package) on the same labelled pairs and unlabelled predictions:
    the same power-tuned estimate and interval, from the unlabelled predictions' sums alone."""
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    rng = np.random.default_rng(seed)
    quality = rng.random(5000)
    predicted = np.clip(quality + rng.normal(0.1, 0.15, 5000), 0, 1)  # a biased evaluator
    human = (rng.random(5000) < quality).astype(float)
    labelled = rng.random(5000) < 0.06
    y, yhat, unlabelled = human[labelled], predicted[labelled], predicted[~labelled]
    result = stats.ppi_mean(y, yhat, len(unlabelled), float(unlabelled.sum()), float((unlabelled**2).sum()))
    assert result.estimate == pytest.approx(float(ppi_mean_pointestimate(y, yhat, unlabelled)[0]), abs=1e-9)
    low, high = ppi_mean_ci(y, yhat, unlabelled, alpha=0.05)
    assert result.ci == pytest.approx((float(low[0]), float(high[0])), abs=1e-9)
    assert 0 < result.lam <= 1


def test_the_ppi_mean_covers_the_truth_and_is_narrower_than_the_labelled_mean() -> None:
    rng = np.random.default_rng(8)
    covered, narrower = 0, 0
    for _ in range(600):
        quality = rng.random(4000)
        predicted = np.clip(quality + rng.normal(0.1, 0.15, 4000), 0, 1)
        human = (rng.random(4000) < quality).astype(float)
        labelled = rng.random(4000) < 0.05
        u = predicted[~labelled]
        result = stats.ppi_mean(human[labelled], predicted[labelled], len(u), float(u.sum()), float((u**2).sum()))
        covered += result.ci[0] <= 0.5 <= result.ci[1]
        narrower += result.se < human[labelled].std(ddof=1) / math.sqrt(labelled.sum())
    assert 0.93 <= covered / 600 <= 0.97 and narrower / 600 > 0.9


def test_the_corrected_pass_rate_removes_the_judges_bias_and_its_interval_covers() -> None:
    """A judge that says "good" to 90% of good answers and 30% of bad ones: its verdict rate
    overstates the share of good answers; corrected with its sensitivity and specificity measured
    on a small labelled sample, the interval covers the true share 93-97% of the time."""
    rng = np.random.default_rng(21)
    truth, covered, errors = 0.6, 0, []
    for _ in range(1000):
        good = rng.random(20_000) < truth
        verdict = np.where(good, rng.random(20_000) < 0.9, rng.random(20_000) < 0.3)
        labelled = rng.random(20_000) < 0.02
        g, v = good[labelled], verdict[labelled]
        result = stats.rogan_gladen(int(verdict.sum()), 20_000, int((g & v).sum()), int(g.sum()), int((~g & ~v).sum()),
                                    int((~g).sum()))
        covered += result.ci[0] <= truth <= result.ci[1]
        errors.append(result.estimate - truth)
    assert abs(np.mean(errors)) < 0.01 and verdict.mean() > truth + 0.05  # the raw verdict rate is 0.66
    assert 0.93 <= covered / 1000 <= 0.97


def test_the_corrected_pass_rate_follows_its_formula() -> None:
    result = stats.rogan_gladen(700, 1000, 90, 100, 70, 100)
    q, e, s = 0.7, 0.9, 0.7
    assert result.estimate == pytest.approx((q + s - 1) / (e + s - 1))
    assert stats.rogan_gladen(50, 100, 5, 10, 5, 10).note.startswith("the judge is no better than chance")


@pytest.mark.parametrize("good_verdicts", [0, 1, 20_000, 50_000, 990_000, 1_000_000])
def test_the_corrected_pass_rates_interval_is_ordered_and_holds_its_estimate(good_verdicts: int) -> None:
    """At 1M requests a verdict rate far from what the labels' sensitivity and specificity allow put
    the raw value at -0.49, and clipping each end apart gave the interval [0.0, -0.43]."""
    result = stats.rogan_gladen(good_verdicts, 1_000_000, 90, 100, 60, 100)
    low, high = result.ci
    assert 0.0 <= low <= result.estimate <= high <= 1.0
    raw = (good_verdicts / 1_000_000 + 0.6 - 1) / 0.5
    assert (result.note is not None) == (not 0.0 <= raw <= 1.0)
    if raw < 0:
        assert result.estimate == 0.0 and result.ci == (0.0, 0.0) and "outside [0, 1]" in result.note


# --- selection by cohort: who gives feedback depends on the cohort, not on the answer -------------
# three cohorts with different shares, mean quality, evaluator bias and feedback rates (the
# enterprise users answer ten times as often as the free ones and are happier): the labelled
# share over-represents them, and the evaluator errs differently in each.
COHORTS = {"free": (0.6, 0.45, 0.15, 0.03), "pro": (0.3, 0.6, 0.0, 0.1), "enterprise": (0.1, 0.75, -0.1, 0.3)}


def _cohort_week(rng: np.random.Generator, n: int, effect: dict[str, float] | None = None
                 ) -> tuple[dict[str, stats.Stratum], dict[str, stats.Stratum], float, float]:
    """One side's requests: per cohort the strata of the mean human score (1-5 ratings on 0-1) and
    of the good share, and the true mean and good share given the cohort sizes."""
    names = list(COHORTS)
    cohort = rng.choice(len(names), n, p=[COHORTS[c][0] for c in names])
    strata, good_strata, truth, truth_good = {}, {}, 0.0, 0.0
    for k, name in enumerate(names):
        _, quality, bias, rate = COHORTS[name]
        quality = min(quality + (effect or {}).get(name, 0.0), 0.95)
        size = int((cohort == k).sum())
        # a rating of 1-5 from a binomial on 4 trials: its mean is the quality, its good share exact
        rating = rng.binomial(4, quality, size) / 4
        predicted = np.clip(rating + bias + rng.normal(0, 0.2, size), 0, 1)
        labelled = rng.random(size) < rate
        strata[name] = stats.Stratum(rating[labelled], predicted[labelled], size, float(predicted.sum()),
                                     float((predicted**2).sum()))
        good = (rating >= 0.75).astype(float)
        good_strata[name] = stats.Stratum(good[labelled], predicted[labelled], size, float(predicted.sum()),
                                          float((predicted**2).sum()))
        truth += size / n * quality
        truth_good += size / n * (quality**4 + 4 * quality**3 * (1 - quality))
    return strata, good_strata, truth, truth_good


def test_the_per_cohort_ppi_intervals_cover_the_truth_under_selection_by_cohort() -> None:
    """The mean human score and the share of good answers over every request: the per-cohort PPI++
    intervals cover 93-97% of 2,000 weeks (at 1,000 the Monte Carlo
    error alone is 0.7 points); the labelled-only mean (over-weighting the happy
    cohort) is biased by more than its standard error."""
    rng = np.random.default_rng(31)
    covered, covered_good, labelled_errors = 0, 0, []
    for _ in range(2000):
        strata, good_strata, truth, truth_good = _cohort_week(rng, 6000)
        mean, good = stats.stratified_ppi_mean(strata), stats.stratified_ppi_mean(good_strata)
        covered += mean["ci"][0] <= truth <= mean["ci"][1]
        covered_good += good["ci"][0] <= truth_good <= good["ci"][1]
        labelled_errors.append(np.concatenate([s.y for s in strata.values()]).mean() - truth)
    assert 0.93 <= covered / 2000 <= 0.97 and 0.93 <= covered_good / 2000 <= 0.97
    assert np.mean(labelled_errors) > 2 * np.std(labelled_errors)


def test_the_impact_on_all_traffic_covers_the_change_under_selection_by_cohort() -> None:
    """A change that helps the free cohort most: the difference of the two sides' per-cohort PPI++
    means (normal_difference) covers the change in the mean over every request 93-97% of the time;
    the labelled-only difference mostly measures the labelled cohorts' smaller effect."""
    rng = np.random.default_rng(32)
    effect = {"free": 0.15, "pro": 0.05, "enterprise": 0.0}
    covered, rejected, labelled_diffs, truths = 0, 0, [], []
    for _ in range(1000):
        before, _, truth_before, _ = _cohort_week(rng, 3000)
        after, _, truth_after, _ = _cohort_week(rng, 3000, effect)
        b, a = stats.stratified_ppi_mean(before), stats.stratified_ppi_mean(after)
        result = stats.normal_difference(b["estimate"], b["se"], 0, a["estimate"], a["se"], 0)
        covered += result.diff_ci[0] <= truth_after - truth_before <= result.diff_ci[1]
        rejected += result.p_value < 0.05
        truths.append(truth_after - truth_before)
        labelled_diffs.append(np.concatenate([s.y for s in after.values()]).mean()
                              - np.concatenate([s.y for s in before.values()]).mean())
    assert 0.93 <= covered / 1000 <= 0.97 and rejected / 1000 > 0.8
    assert np.mean(labelled_diffs) < np.mean(truths) - 0.02


def test_the_impact_on_all_traffic_rejects_at_its_level_without_a_change() -> None:
    rng = np.random.default_rng(33)
    rejected = 0
    for _ in range(1000):
        b, a = (stats.stratified_ppi_mean(_cohort_week(rng, 3000)[0]) for _ in range(2))
        rejected += stats.normal_difference(b["estimate"], b["se"], 0, a["estimate"], a["se"], 0).p_value < 0.05
    assert 0.03 <= rejected / 1000 <= 0.07


def test_the_normal_difference_is_a_z_test() -> None:
    result = stats.normal_difference(0.5, 0.03, 10, 0.6, 0.04, 12)
    assert result.diff == pytest.approx(0.1) and result.diff_ci == pytest.approx((0.1 - 1.959964 * 0.05,
                                                                                  0.1 + 1.959964 * 0.05))
    assert result.p_value == pytest.approx(2 * sps.norm.sf(2.0))
    assert stats.normal_difference(None, None, 0, 0.6, 0.04, 12).p_value is None


def test_the_corrected_pass_rate_covers_under_selection_by_cohort() -> None:
    """Labels come mostly from the happy cohort, the judge errs alike in every cohort: its error
    rates measured on the labelled requests hold for all, and the Rogan-Gladen interval covers
    the share of good answers over every request 93-97% of the time."""
    rng = np.random.default_rng(34)
    covered = 0
    for _ in range(1000):
        names = list(COHORTS)
        cohort = rng.choice(3, 20_000, p=[COHORTS[c][0] for c in names])
        truth_by_cohort = np.array([COHORTS[c][1] for c in names])
        good = rng.random(20_000) < truth_by_cohort[cohort]
        verdict = np.where(good, rng.random(20_000) < 0.85, rng.random(20_000) < 0.25)
        labelled = rng.random(20_000) < np.array([COHORTS[c][3] for c in names])[cohort]
        g, v = good[labelled], verdict[labelled]
        result = stats.rogan_gladen(int(verdict.sum()), 20_000, int((g & v).sum()), int(g.sum()), int((~g & ~v).sum()),
                                    int((~g).sum()))
        truth = float((np.bincount(cohort, minlength=3) / 20_000 * truth_by_cohort).sum())
        covered += result.ci[0] <= truth <= result.ci[1]
    assert 0.93 <= covered / 1000 <= 0.97


def test_systems_with_equal_means_tie_whatever_the_order_of_their_items() -> None:
    """Two systems' human scores 0.1, 0.2, 0.3 in two orders: numpy's sums make their means differ in
    the last bit (0.20000000000000004 and 0.2), which ranked one above the other; exact means tie."""
    assert np.mean([0.1, 0.2, 0.3]) != np.mean([0.3, 0.2, 0.1])  # the trap
    human = np.array([0.1, 0.2, 0.3, 0.3, 0.2, 0.1, 0.5, 0.6, 0.7, 0.9, 0.8, 0.7])
    evaluator = np.array([0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.9, 0.9, 0.9])
    system = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3)
    result = stats.system_level(evaluator, human, system, resamples=200)
    assert result["per_system"]["a"]["human_mean"] == result["per_system"]["b"]["human_mean"]
    exact_x, exact_y = [0.3, 0.5, 0.4, 0.9], [0.2, 0.2, 0.6, 0.8]  # the means as written, ties tied
    assert result["spearman"]["r"] == pytest.approx(sps.spearmanr(exact_x, exact_y).statistic, abs=1e-12)
    assert result["kendall"]["r"] == pytest.approx(sps.kendalltau(exact_x, exact_y).statistic, abs=1e-12)
    # the same items in any order: the same figures, intervals included
    rng = np.random.default_rng(5)
    for _ in range(3):
        order = rng.permutation(len(human))
        assert stats.system_level(evaluator[order], human[order], system[order], resamples=200) == result
