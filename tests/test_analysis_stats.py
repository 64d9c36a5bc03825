"""Statistics: checked against scipy, hand-computed cases and the published alpha example."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from csc_harness.analysis.stats import (
    Estimate,
    Undefined,
    bootstrap_correlations,
    bootstrap_p,
    cluster_means,
    correlation,
    count_blocks,
    estimate,
    krippendorff_alpha,
    percentile_interval,
    resample_counts,
    rowwise_correlations,
    weighted_midranks,
    weighted_pearson,
)

NAN = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
# observers, twelve units, values 1-5, missing data. Published: nominal 0.743,
# ordinal 0.815, interval 0.849.
RELIABILITY = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])


@pytest.mark.parametrize(("level", "published"), [
    pytest.param("nominal", 0.743, id="nominal"),
    pytest.param("ordinal", 0.815, id="ordinal"),
    pytest.param("interval", 0.849, id="interval"),
])
def test_alpha_matches_krippendorffs_worked_example(level, published):
    assert krippendorff_alpha(RELIABILITY, level) == pytest.approx(published, abs=5e-4)


def test_alpha_is_one_for_perfect_agreement():
    data = np.array([[1, 2, 3, 4, 5, NAN], [1, 2, 3, 4, 5, 3], [NAN, 2, 3, 4, 5, 3.0]])
    assert krippendorff_alpha(data) == pytest.approx(1.0)


def test_alpha_ordinal_treats_non_integer_scores_as_categories():
    data = np.array([[1, 2, 3, 4], [1.5, 2, 3.5, 4]])
    assert -1 < krippendorff_alpha(data) < 1


@pytest.mark.parametrize(("data", "reason"), [
    pytest.param([[1, 2, 3]], "fewer than 2 raters", id="one-rater"),
    pytest.param([[1, NAN, 3], [NAN, 2, NAN]], "no unit rated by 2", id="no-pairable-unit"),
    pytest.param([[4, 4, 4], [4, 4, NAN]], "no expected disagreement", id="constant"),
])
def test_alpha_undefined_says_why(data, reason):
    with pytest.raises(Undefined, match=reason):
        krippendorff_alpha(np.array(data, dtype=float))


def test_alpha_agrees_with_the_krippendorff_package():
    kp = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(3)
    data = rng.integers(1, 6, size=(4, 60)).astype(float)
    data[rng.random(data.shape) < 0.25] = NAN
    expected = kp.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert krippendorff_alpha(data) == pytest.approx(expected)


@pytest.mark.parametrize(("x", "y", "rho"), [
    pytest.param([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8, id="no-ties: 1-6*4/(5*24)"),
    pytest.param([1, 2, 3, 4, 5], [5, 6, 7, 8, 7], 8 / np.sqrt(95), id="ties: midranks"),
    pytest.param([1, 2, 3], [3, 2, 1], -1.0, id="reversed"),
])
def test_spearman_hand_computed(x, y, rho):
    assert correlation(np.array(x), np.array(y), "spearman")[0] == pytest.approx(rho)


@pytest.mark.parametrize("method", ["spearman", "kendall", "pearson"])
def test_correlation_matches_scipy(method):
    rng = np.random.default_rng(1)
    x = rng.integers(1, 6, 80).astype(float)
    y = x + rng.normal(0, 1.5, 80)
    fn = {"spearman": sps.spearmanr, "kendall": sps.kendalltau, "pearson": sps.pearsonr}[method]
    expected = fn(x, y)
    value, p = correlation(x, y, method)
    assert value == pytest.approx(expected[0])
    assert p == pytest.approx(expected[1])


@pytest.mark.parametrize(("x", "y", "reason"), [
    pytest.param([3, 3, 3, 3], [1, 2, 3, 4], "judge scores are constant", id="constant-x"),
    pytest.param([1, 2, 3, 4], [2, 2, 2, 2], "human scores are constant", id="constant-y"),
    pytest.param([1, 2], [1, 2], "fewer than 3", id="two-pairs"),
])
def test_correlation_undefined_says_why(x, y, reason):
    with pytest.raises(Undefined, match=reason):
        correlation(np.array(x, float), np.array(y, float), "spearman", ("judge", "human"))


def test_weighted_statistics_equal_scipy_on_the_expanded_resample():
    rng = np.random.default_rng(7)
    x = rng.integers(1, 6, 40).astype(float)
    y = np.round(x + rng.normal(0, 1, 40))
    w = rng.integers(0, 3, size=(5, 40)).astype(float)
    reps = bootstrap_correlations(x, y, w)
    for r in range(5):
        take = np.repeat(np.arange(40), w[r].astype(int))
        assert reps["pearson"][r] == pytest.approx(sps.pearsonr(x[take], y[take])[0])
        assert reps["spearman"][r] == pytest.approx(sps.spearmanr(x[take], y[take])[0])
        assert reps["kendall"][r] == pytest.approx(sps.kendalltau(x[take], y[take])[0])
        ranks = weighted_midranks(x, w[r:r + 1])[0]
        assert ranks[w[r] > 0] == pytest.approx(
            sps.rankdata(x[take])[np.searchsorted(take, np.flatnonzero(w[r] > 0))])


def test_weighted_pearson_is_nan_for_a_constant_resample():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 2.0])
    assert np.isnan(weighted_pearson(x, y, np.array([[0.0, 3.0, 0.0]])))[0]


def test_rowwise_correlations_match_scipy_per_row():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
    out = rowwise_correlations(x, y)
    for r in range(4):
        assert out["spearman"][r] == pytest.approx(sps.spearmanr(x[r], y[r])[0])
        assert out["kendall"][r] == pytest.approx(sps.kendalltau(x[r], y[r])[0])
        assert out["pearson"][r] == pytest.approx(sps.pearsonr(x[r], y[r])[0])


def test_count_blocks_draw_every_cluster_count_times_and_reproduce():
    a = resample_counts(50, 300, np.random.default_rng(0))
    b = np.vstack(list(count_blocks(50, 300, np.random.default_rng(0))))
    assert a.shape == (300, 50)
    assert (a.sum(axis=1) == 50).all()
    assert (a == b).all()
    assert not (a == resample_counts(50, 300, np.random.default_rng(1))).all()


def _clustered(n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.normal(3.0, 1.0, size=n_clusters * 4)
    clusters = np.repeat(np.arange(n_clusters), 4)
    sums = np.bincount(clusters, weights=values)[:, None]
    counts = np.bincount(clusters).astype(float)[:, None]
    return sums, counts


def test_bootstrap_interval_contains_the_point_estimate_and_shrinks_with_n():
    widths = []
    for n in (20, 2000):
        sums, counts = _clustered(n)
        point, reps = cluster_means(sums, counts, 1000, np.random.default_rng(0))
        low, high = percentile_interval(reps)
        assert low[0] <= point[0] <= high[0]
        assert point[0] == pytest.approx(sums.sum() / counts.sum())
        widths.append(high[0] - low[0])
    assert widths[1] < widths[0] / 5  # sqrt(100) = 10 times narrower in expectation


def test_bootstrap_is_reproducible_from_the_seed():
    sums, counts = _clustered(30)
    first = cluster_means(sums, counts, 200, np.random.default_rng(0))[1]
    again = cluster_means(sums, counts, 200, np.random.default_rng(0))[1]
    other = cluster_means(sums, counts, 200, np.random.default_rng(1))[1]
    assert (first == again).all()
    assert not (first == other).all()


def test_cluster_means_accept_sparse_input():
    from scipy import sparse

    sums, counts = _clustered(40)
    dense = cluster_means(sums, counts, 100, np.random.default_rng(0))
    sp = cluster_means(sparse.csr_matrix(sums), sparse.csr_matrix(counts), 100,
                       np.random.default_rng(0))
    assert dense[0] == pytest.approx(sp[0])
    assert dense[1] == pytest.approx(sp[1])


@pytest.mark.parametrize(("reps", "expected"), [
    pytest.param(np.full(99, 0.5), 2 / 100, id="all-positive: smallest p"),
    pytest.param(np.r_[np.full(50, -1.0), np.full(49, 1.0)], 1.0, id="centred: p=1"),
    pytest.param(np.zeros(9), 1.0, id="all-zero: p=1"),
])
def test_bootstrap_p(reps, expected):
    assert bootstrap_p(reps)[0] == pytest.approx(expected)


def test_percentile_interval_ignores_nan_rounds_and_reports_nan_when_none():
    reps = np.array([[1.0, NAN], [2.0, NAN], [NAN, NAN], [3.0, NAN]])
    low, high = percentile_interval(reps, 0.5)
    assert (low[0], high[0]) == (1.5, 2.5)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_estimate_nulls_the_interval_when_most_rounds_are_undefined():
    est = estimate(0.5, 0.01, np.r_[np.full(60, NAN), np.full(40, 0.5)])
    assert est.ci_low is None
    assert "40 of 100" in est.to_dict()["ci_low_reason"]


def test_estimate_to_dict_gives_a_reason_for_every_null():
    out = Estimate(None, reason="judge scores are constant").to_dict()
    assert out == {"value": None, "value_reason": "judge scores are constant",
                   "ci_low": None, "ci_low_reason": "judge scores are constant",
                   "ci_high": None, "ci_high_reason": "judge scores are constant",
                   "p": None, "p_reason": "judge scores are constant"}


@pytest.mark.parametrize(("x", "y", "p"), [
    pytest.param([1, 2, 3], [1, 2, 3], 1 / 3, id="n=3 perfect: 2 of 6 orders as extreme"),
    pytest.param([1, 2, 3, 4], [1, 2, 3, 4], 2 / 24, id="n=4 perfect"),
])
def test_spearman_p_is_exact_for_few_pairs(x, y, p):
    assert correlation(np.array(x, float), np.array(y, float), "spearman")[1] == pytest.approx(p)


def test_spearman_p_exact_agrees_with_scipy_permutation_test():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=7), rng.normal(size=7)
    ref = sps.permutation_test((y,), lambda b: sps.spearmanr(x, b)[0],
                               permutation_type="pairings", n_resamples=np.inf).pvalue
    assert correlation(x, y, "spearman")[1] == pytest.approx(ref)
