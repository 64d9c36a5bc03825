"""Paired sign-flip permutation test over dialogues: the leaderboard's and ablation's test.

Why this test and not the bootstrap or a t-test is argued in :mod:`.stats`' docstring. In
short: under "the two sides of a comparison are exchangeable within each dialogue" (a judge
that cannot tell two models apart) every dialogue's total difference is as likely to have
the opposite sign, so counting sign vectors at least as extreme gives an exact p-value for
any number of dialogues, any dialogue sizes and any score scale. Randomness comes only from
the caller's ``numpy.random.Generator`` and only beyond :data:`EXACT_MAX_CLUSTERS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

EXACT_MAX_CLUSTERS = 12  # up to 2**12 = 4096 sign vectors are enumerated; beyond, sampled


def min_dialogues(confidence: float = 0.95) -> int:
    """Fewest dialogues with which the sign-flip test can reach ``p <= 1 - confidence``.

    Its smallest p over G dialogues is ``2 / 2**G`` (only the observed signs and their
    mirror image are as extreme), so at 95% that is 6: with 5 or fewer dialogues no
    difference can be significant and no 95% interval is bounded.
    """
    return max(2, math.ceil(math.log2(2.0 / (1.0 - confidence)) - 1e-9))


def sign_flips(n_clusters: int, rounds: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Sign vectors ``(F, n_clusters)`` of +1/-1 and whether they are all ``2**n_clusters``.

    Up to :data:`EXACT_MAX_CLUSTERS` clusters every vector is listed (row 0 is all +1, the
    observed data), so the test is exact; beyond, ``rounds`` vectors are drawn from ``rng``.
    """
    if n_clusters <= EXACT_MAX_CLUSTERS:
        bits = (np.arange(2 ** n_clusters)[:, None] >> np.arange(n_clusters)) & 1
        return 1.0 - 2.0 * bits, True
    return 1.0 - 2.0 * rng.integers(0, 2, size=(rounds, n_clusters)), False


def flip_p(hits: np.ndarray, n_flips: int, exact: bool) -> np.ndarray:
    """p from the number of sign vectors at least as extreme as the data: ``hits / F`` when
    all were listed (the data are among them), ``(hits + 1) / (F + 1)`` when sampled."""
    hits = np.asarray(hits, dtype=float)
    return hits / n_flips if exact else (hits + 1.0) / (n_flips + 1.0)


@dataclass(frozen=True)
class PairedTest:
    """Per series: mean paired difference, sign-flip interval and p; NaN where undefined,
    with the reason in ``ci_reason`` / ``p_reason`` (None where defined)."""

    diff: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray
    n_clusters: np.ndarray
    ci_reason: list[str | None]
    p_reason: list[str | None]


def sign_flip_test(
    sums, counts, rounds: int, rng: np.random.Generator, confidence: float = 0.95
) -> PairedTest:
    """Paired sign-flip permutation test over clusters for many series of differences.

    ``sums[c, s]`` / ``counts[c, s]`` (dense or scipy sparse, clusters x series) are the
    total and number of paired differences of series s in cluster c. The statistic is the
    total ``T = sum_c sums[c]`` (the mean difference times the number of pairs); under
    "the two sides are exchangeable within each dialogue" every cluster's total is as
    likely negated, so p counts sign vectors with ``|sum_c s_c sums[c]| >= |T|``. The
    interval holds every shift d the same test does not reject on ``sums - d * counts``
    (exact under a location shift); it excludes 0 exactly when ``p <= 1 - confidence``.
    """
    n_cl = np.asarray((counts > 0).sum(axis=0)).ravel()
    n_pairs = np.asarray(counts.sum(axis=0)).ravel().astype(float)
    total = np.asarray(sums.sum(axis=0)).ravel().astype(float)
    flips, exact = sign_flips(sums.shape[0], rounds, rng)
    a = np.asarray((sums.T @ flips.T).T)
    b = np.asarray((counts.T @ flips.T).T)
    tol = 1e-9 * (np.asarray(abs(sums).sum(axis=0)).ravel() + 1.0)
    hits = (np.abs(a) >= np.abs(total) - tol).sum(axis=0)
    p = flip_p(hits, len(flips), exact)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(n_pairs > 0, total / np.where(n_pairs > 0, n_pairs, 1), np.nan)
    alpha = 1.0 - confidence
    # Most sign vectors that may be at least as extreme while p stays <= alpha.
    k = math.floor(alpha * len(flips) + 1e-9) if exact else math.floor(
        alpha * (len(flips) + 1) - 1.0 + 1e-9)
    low = _lower_bound(a, b, total, n_pairs, k)
    high = -_lower_bound(-a, b, -total, n_pairs, k)
    for bound in (low, high):
        bound[np.abs(bound) * np.maximum(n_pairs, 1) < tol] = 0.0
    ci_reason: list[str | None] = []
    p_reason: list[str | None] = []
    need = min_dialogues(confidence)
    for i, g in enumerate(n_cl):
        if g < 2:
            p_reason.append("no paired items" if g == 0 else "one dialogue: no test")
            ci_reason.append("no paired items" if g == 0 else "one dialogue: no interval")
            p[i] = low[i] = high[i] = np.nan
            continue
        p_reason.append(None)
        if np.isfinite(low[i]) and np.isfinite(high[i]):
            ci_reason.append(None)
            continue
        ci_reason.append(f"{g} dialogues: too few for a bounded {100 * confidence:g}% "
                         f"interval (a paired test over dialogues needs {need})")
        low[i] = high[i] = np.nan
    return PairedTest(diff, low, high, p, n_cl, ci_reason, p_reason)


def _lower_bound(a: np.ndarray, b: np.ndarray, total: np.ndarray, n: np.ndarray,
                 k: int) -> np.ndarray:
    """Lowest shift the test keeps, per series (-inf: unbounded below).

    Below the mean difference, sign vector s is at least as extreme as the data iff
    ``d >= m_s = min((T - A_s) / (N - B_s), (T + A_s) / (N + B_s))`` (A_s, B_s: the flipped
    totals and counts; a zero denominator means s flips nothing and always counts). So the
    number of extreme vectors grows with d, and d is rejected while at most k of the
    ``m_s`` lie at or below it: the bound is the (k+1)-th smallest ``m_s``.
    """
    if k < 0:
        return np.full(len(total), -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        first = np.where(n - b > 0, (total - a) / np.where(n - b > 0, n - b, 1), -np.inf)
        second = np.where(n + b > 0, (total + a) / np.where(n + b > 0, n + b, 1), -np.inf)
    return np.partition(np.minimum(first, second), k, axis=0)[k]


_MAX_CELLS = 1 << 22  # swapped copies held at once by swap_test: bounds its memory


def swap_test(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    first: np.ndarray, second: np.ndarray, clusters: np.ndarray,
    rounds: int, rng: np.random.Generator,
) -> float:
    """Two-sided p of ``statistic(first, second)`` against swapping the two sides within
    whole clusters: the same sign-flip test for statistics that are not sums (e.g. a
    difference of two correlations with human scores).

    ``first`` and ``second`` are (n,) paired values, ``clusters`` (n,) codes 0..G-1;
    ``statistic(a, b)`` maps (F, n) arrays to (F,) values. A NaN statistic counts as
    extreme, which keeps the test valid (conservative) when a swap makes it undefined.
    """
    flips, exact = sign_flips(int(clusters.max()) + 1, rounds, rng)
    observed = abs(float(statistic(first[None], second[None])[0]))
    tol = 1e-12 * max(1.0, observed)
    step = max(1, _MAX_CELLS // max(1, len(first)))
    hits = 0
    for start in range(0, len(flips), step):
        swap = flips[start:start + step][:, clusters] < 0
        values = statistic(np.where(swap, second, first), np.where(swap, first, second))
        hits += int(np.sum(~(np.abs(values) < observed - tol)))
    return float(flip_p(hits, len(flips), exact))
