"""Statistics for the analysis layer: cluster bootstrap, correlations, Krippendorff's alpha.

Conventions every function here keeps:

- Randomness comes only from an explicit ``numpy.random.Generator`` the caller passes in
  (the public entry points build it from a fixed ``seed``), so a result reproduces exactly.
- The bootstrap resamples *clusters* (dialogues), never single turns: turns of one dialogue
  are not independent. A round is a vector of how often each cluster was drawn, and every
  statistic is computed from those counts as weights, vectorised over rounds.
- A statistic that is undefined for its input (constant vector, too few pairs, one rater)
  raises :class:`Undefined` with the reason; the caller turns it into ``null`` plus a
  ``"<name>_reason"`` string. Nothing is ever silently reported as 0.

Paired comparisons (two models on the same items, two judge variants on the same units)
use the sign-flip permutation test over dialogues of :mod:`.signflip`, not the bootstrap:

- Why not the bootstrap: with G dialogues it has at most ``C(2G-1, G)`` distinct resamples
  (10 for G = 3) and its percentile interval is too narrow; a judge scoring at random made
  two models "significantly" different (p = 0.002) on 3 dialogues.
- Why not a t-test on per-dialogue mean differences (G-1 df): it assumes normal dialogue
  means. Discrete scores on few turns break that at small G: with one judged turn per
  dialogue, three differences of +1 give t = infinity and p = 0, which happens by chance in
  1 of 4 such runs.
- The sign-flip test assumes only what a judge that cannot tell the models apart implies:
  the two sides are exchangeable within a dialogue, so each dialogue's total difference is
  as likely negated. Listing all ``2**G`` sign vectors (sampling ``rounds`` of them above
  G = 12, with the add-one p) gives a p-value that is exact at any G, dialogue size and
  scale, and the same test serves any paired statistic (:func:`.signflip.swap_test`).
  Its interval inverts the test (shifts it does not reject), so the interval excludes 0
  exactly when the comparison is marked significant.
- The price is honest: its smallest p is ``2 / 2**G``, so below 6 dialogues (at 95%,
  :func:`.signflip.min_dialogues`) nothing is significant and the interval is unbounded,
  reported as null with the reason. One dialogue gets no test and no interval at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _sps

MIN_PAIRS = 3
MAX_ROUNDS = 100_000
"""Most bootstrap rounds accepted (``--rounds``, ``analysis.rounds``): intervals are stable
long before, and more would only exhaust memory."""
_MAX_CELLS = 1 << 24  # counts per block of rounds: bounds memory for huge cluster counts


class Undefined(ValueError):
    """A statistic has no value for this input; ``str(exc)`` says why."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval and p-value; None fields carry a reason."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    p: float | None = None
    reason: str | None = None
    ci_reason: str | None = None
    p_reason: str | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        """``{"value", "ci_low", "ci_high", "p"}``, each null one with ``"<name>_reason"``."""
        out: dict[str, float | str | None] = {}
        for name, reason in (("value", self.reason), ("ci_low", self.ci_reason),
                             ("ci_high", self.ci_reason), ("p", self.p_reason)):
            val = getattr(self, name)
            out[name] = val
            if val is None:
                out[f"{name}_reason"] = reason or self.reason or "undefined"
        return out


def value_or_reason(name: str, fn, *args, **kwargs) -> dict[str, float | str | None]:
    """``{name: fn(...)}`` or ``{name: None, name + "_reason": why}`` when undefined."""
    try:
        return {name: float(fn(*args, **kwargs))}
    except Undefined as exc:
        return {name: None, f"{name}_reason": str(exc)}


# --------------------------------------------------------------------------- bootstrap


def count_blocks(n_clusters: int, rounds: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield blocks of bootstrap rounds as draw counts, shape ``(block, n_clusters)``.

    Row r, column c says how often cluster c was drawn in round r (each round draws
    ``n_clusters`` clusters with replacement). Blocks keep memory bounded; the block size
    depends only on ``n_clusters``, so a seed reproduces the same rounds.
    """
    if n_clusters < 1:
        raise Undefined("no clusters to resample")
    block = max(1, min(rounds, _MAX_CELLS // n_clusters))
    done = 0
    while done < rounds:
        size = min(block, rounds - done)
        draws = rng.integers(0, n_clusters, size=(size, n_clusters))
        draws += np.arange(size)[:, None] * n_clusters
        counts = np.bincount(draws.ravel(), minlength=size * n_clusters)
        yield counts.reshape(size, n_clusters).astype(np.float64)
        done += size


def resample_counts(n_clusters: int, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """All rounds at once, shape ``(rounds, n_clusters)``; see :func:`count_blocks`."""
    return np.vstack(list(count_blocks(n_clusters, rounds, rng)))


def cluster_means(
    sums: np.ndarray, counts: np.ndarray, rounds: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Point means and bootstrap replicates of many series sharing one set of clusters.

    ``sums[c, s]`` and ``counts[c, s]`` (dense arrays or scipy sparse matrices) are the
    total and the number of observations of series s in cluster c. Returns ``(means[s], replicates[rounds, s])``; every series sees
    the same resampled clusters, which is what makes differences between series paired.
    A replicate whose resample holds no observation of a series is NaN.
    """
    total = np.asarray(counts.sum(axis=0)).ravel()
    grand = np.asarray(sums.sum(axis=0)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(total > 0, grand / np.where(total > 0, total, 1), np.nan)
    reps = np.empty((rounds, sums.shape[1]))
    row = 0
    for block in count_blocks(sums.shape[0], rounds, rng):
        # (S^T B^T)^T keeps a sparse S on the left, where scipy multiplies efficiently.
        num = np.asarray((sums.T @ block.T).T)
        den = np.asarray((counts.T @ block.T).T)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps[row:row + len(block)] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        row += len(block)
    return means, reps


def percentile_interval(
    replicates: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column, ignoring NaN rounds; NaN where no round is defined."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    reps = np.asarray(replicates, dtype=float)
    if reps.ndim == 1:
        reps = reps[:, None]
    low = np.full(reps.shape[1], np.nan)
    high = np.full(reps.shape[1], np.nan)
    finite = np.isfinite(reps)
    full = finite.all(axis=0)
    if full.any():
        low[full], high[full] = np.percentile(reps[:, full], [tail, 100.0 - tail], axis=0)
    for col in np.flatnonzero(~full & finite.any(axis=0)):
        low[col], high[col] = np.percentile(reps[finite[:, col], col], [tail, 100.0 - tail])
    return low, high


def bootstrap_p(replicates: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value that the centre of each column is 0.

    ``2 * min(#{rep <= 0}, #{rep >= 0}) + 1) / (R + 1)``, capped at 1: the add-one form
    never reports p = 0 from a finite number of rounds. NaN rounds are left out.
    """
    reps = np.asarray(replicates, dtype=float)
    if reps.ndim == 1:
        reps = reps[:, None]
    finite = np.isfinite(reps)
    n = finite.sum(axis=0)
    low = np.where(finite, reps <= 0, False).sum(axis=0)
    high = np.where(finite, reps >= 0, False).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(1.0, 2.0 * (np.minimum(low, high) + 1.0) / (n + 1.0))
    return np.where(n > 0, p, np.nan)


# --------------------------------------------------------------------------- correlation

Method = Literal["spearman", "kendall", "pearson"]
METHODS: tuple[Method, ...] = ("spearman", "kendall", "pearson")


def _check_pairs(x: np.ndarray, y: np.ndarray, what: tuple[str, str]) -> None:
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
    if len(x) < MIN_PAIRS:
        raise Undefined(f"fewer than {MIN_PAIRS} paired observations (n={len(x)})")
    for vec, name in zip((x, y), what):
        if np.all(vec == vec[0]):
            raise Undefined(f"{name} scores are constant ({float(vec[0]):g} for all {len(vec)})")


def correlation(
    x: np.ndarray, y: np.ndarray, method: Method, what: tuple[str, str] = ("x", "y")
) -> tuple[float, float]:
    """``(coefficient, two-sided p)`` from scipy; Kendall is tau-b (ties corrected).

    Raises :class:`Undefined` for fewer than 3 pairs or a constant vector. Spearman's p is
    exact (all permutations) up to 8 pairs, scipy's t approximation above. The p-value
    assumes independent pairs; the bootstrap interval is the cluster-aware statement.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    _check_pairs(x, y, what)
    if method == "spearman":
        res = _sps.spearmanr(x, y)
    elif method == "kendall":
        res = _sps.kendalltau(x, y, variant="b")
    elif method == "pearson":
        res = _sps.pearsonr(x, y)
    else:
        raise ValueError(f"unknown correlation method {method!r}; valid: {', '.join(METHODS)}")
    stat, p = float(res[0]), float(res[1])
    if not np.isfinite(stat):
        raise Undefined(f"{method} is undefined for this input")
    if method == "spearman" and len(x) <= EXACT_SPEARMAN_MAX_N:
        p = _exact_spearman_p(x, y, stat)
    return stat, p


EXACT_SPEARMAN_MAX_N = 8


def _exact_spearman_p(x: np.ndarray, y: np.ndarray, rho: float) -> float:
    """Two-sided permutation p over all n! orderings: scipy's t approximation says p = 0
    for a perfect rank agreement of 3 models, where the truth is 1/3."""
    from itertools import permutations

    rx, ry = _sps.rankdata(x), _sps.rankdata(y)
    perms = ry[np.array(list(permutations(range(len(ry)))))]
    rhos = weighted_pearson(rx, perms, np.ones_like(perms))
    return float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r per row of weights ``w`` (rounds x n); x and y are (n,) or (rounds, n).

    With integer weights this equals Pearson on the data with each observation repeated
    w times. NaN where a row has no spread.
    """
    tot = w.sum(axis=1)
    mx = (w * x).sum(axis=1) / tot
    my = (w * y).sum(axis=1) / tot
    dx = x - mx[:, None]
    dy = y - my[:, None]
    sxy = (w * dx * dy).sum(axis=1)
    sxx = (w * dx * dx).sum(axis=1)
    syy = (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    # Rounding leaves a tiny positive variance on constant rows; treat those as constant.
    scale = np.maximum((w * x * x).sum(axis=1), 1.0) * 1e-12
    r[(sxx <= scale) | (syy <= np.maximum((w * y * y).sum(axis=1), 1.0) * 1e-12)] = np.nan
    return np.clip(r, -1.0, 1.0)


def weighted_midranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Midranks of x (n,) in each resample described by weights ``w`` (rounds x n).

    An observation's rank counts the weight strictly below its value plus half its tie
    group's weight (plus one half), i.e. ``rankdata`` of the expanded resample.
    """
    order = np.argsort(x, kind="stable")
    _, start, inverse = np.unique(x[order], return_index=True, return_inverse=True)
    group_w = np.add.reduceat(w[:, order], start, axis=1)
    below = np.cumsum(group_w, axis=1) - group_w
    ranks_sorted = (below + (group_w + 1.0) / 2.0)[:, inverse]
    ranks = np.empty_like(ranks_sorted)
    ranks[:, order] = ranks_sorted
    return ranks


def bootstrap_correlations(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, methods: tuple[Method, ...] = METHODS
) -> dict[Method, np.ndarray]:
    """Replicates of each correlation for item-level data under cluster-resampling weights.

    Pearson and Spearman are vectorised over rounds through the weights; Kendall's tau-b
    loops over rounds with scipy's O(n log n) count on the expanded resample (a vectorised
    form needs an n x n pair matrix). NaN marks a round where the statistic is undefined.
    """
    out: dict[Method, np.ndarray] = {}
    if "pearson" in methods:
        out["pearson"] = weighted_pearson(x, y, weights)
    if "spearman" in methods:
        out["spearman"] = weighted_pearson(weighted_midranks(x, weights),
                                           weighted_midranks(y, weights), weights)
    if "kendall" in methods:
        reps = np.full(len(weights), np.nan)
        index = np.arange(len(x))
        for r, row in enumerate(weights.astype(np.int64)):
            take = np.repeat(index, row)
            xs, ys = x[take], y[take]
            if len(take) >= MIN_PAIRS and xs.min() < xs.max() and ys.min() < ys.max():
                reps[r] = _sps.kendalltau(xs, ys, variant="b")[0]
        out["kendall"] = reps
    return out


def rowwise_correlations(
    x: np.ndarray, y: np.ndarray, methods: tuple[Method, ...] = METHODS
) -> dict[Method, np.ndarray]:
    """Correlation of each row of x with the same row of y (rounds x n), e.g. model means."""
    ones = np.ones_like(x)
    out: dict[Method, np.ndarray] = {}
    if "pearson" in methods:
        out["pearson"] = weighted_pearson(x, y, ones)
    if "spearman" in methods:
        out["spearman"] = weighted_pearson(_sps.rankdata(x, axis=1), _sps.rankdata(y, axis=1),
                                           ones)
    if "kendall" in methods:
        out["kendall"] = _rowwise_kendall(x, y)
    return out


def _rowwise_kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b per row from all pairs: fine for the few models of a leaderboard."""
    iu = np.triu_indices(x.shape[1], k=1)
    sx = np.sign(x[:, :, None] - x[:, None, :])[:, iu[0], iu[1]]
    sy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]
    s = (sx * sy).sum(axis=1)
    nx, ny = (sx != 0).sum(axis=1), (sy != 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = s / np.sqrt(nx.astype(float) * ny)
    return np.where((nx > 0) & (ny > 0), tau, np.nan)


def estimate(
    value: float, p: float | None, replicates: np.ndarray, confidence: float = 0.95,
    n_clusters: int | None = None,
) -> Estimate:
    """An :class:`Estimate` from a point value and its replicates.

    The interval is reported when at least half the rounds are defined; otherwise it is
    null with the count, because dropping most rounds would bias it. One cluster
    (``n_clusters == 1``) gives no interval: every resample is the data, a zero width.
    """
    if n_clusters == 1:
        return Estimate(value, None, None, p, ci_reason="one dialogue: no interval")
    reps = np.asarray(replicates, dtype=float)
    defined = int(np.isfinite(reps).sum())
    if defined == 0 or defined * 2 < len(reps):
        return Estimate(value, None, None, p,
                        ci_reason=f"statistic defined in only {defined} of {len(reps)} "
                                  "bootstrap rounds")
    low, high = percentile_interval(reps, confidence)
    return Estimate(value, float(low[0]), float(high[0]), p)


# --------------------------------------------------------------------------- alpha

Level = Literal["nominal", "ordinal", "interval"]


def krippendorff_alpha(data: np.ndarray, level: Level = "ordinal") -> float:
    """Krippendorff's alpha for a raters x units matrix with NaN for missing values.

    Uses the coincidence-matrix form (Krippendorff 2011, "Computing Krippendorff's
    alpha-reliability"): only units with two or more values are pairable. The ordinal
    metric ranks the distinct values observed, so non-integer scores (a judge's mean over
    samples) are simply more categories. Range (-1, 1]; 1 is perfect agreement.
    Raises :class:`Undefined` with fewer than two raters, no pairable unit, or a single
    value used throughout (no expected disagreement).
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2:
        raise Undefined("fewer than 2 raters")
    present = np.isfinite(data)
    pairable = present.sum(axis=0) >= 2
    if not pairable.any():
        raise Undefined("no unit rated by 2 or more raters")
    data, present = data[:, pairable], present[:, pairable]
    values, codes = np.unique(data[present], return_inverse=True)
    if len(values) < 2:
        raise Undefined(f"every rating is {values[0]:g}: no expected disagreement")
    counts = np.zeros((data.shape[1], len(values)))
    unit = np.broadcast_to(np.arange(data.shape[1]), data.shape)[present]
    np.add.at(counts, (unit, codes), 1.0)
    m = counts.sum(axis=1, keepdims=True)
    coincidence = (counts / (m - 1.0)).T @ counts
    coincidence -= np.diag((counts / (m - 1.0)).sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    delta = _delta_squared(values, n_c, level)
    observed = (coincidence * delta).sum()
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1.0)
    if expected <= 0:
        raise Undefined("no expected disagreement")
    return float(1.0 - observed / expected)


def _delta_squared(values: np.ndarray, n_c: np.ndarray, level: Level) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if level == "ordinal":
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
        hi = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[hi] - np.where(lo > 0, cum[lo - 1], 0.0)
        return (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    raise ValueError(f"unknown level {level!r}; valid: nominal, ordinal, interval")
