"""Pairwise results: win / tie / loss against a baseline and Bradley-Terry strengths.

Reads the ``pairwise`` rows of :func:`~csc_harness.analysis.load_judgments` (see the row
contract in :mod:`csc_harness.analysis.rows`); never imports judging code.

How verdicts become matches. A *match* is one (judge, dimension, item, model pair, prompt,
sample). ``winner`` names ``model_a`` or ``model_b`` (not a position), so the verdicts of
the two orders compare directly:

- both orders ok and naming the same winner (or both a tie): *consistent*, that verdict;
- both orders ok and disagreeing: *order-inconsistent*. Counted apart (``n_inconsistent``)
  and, as MT-Bench does, scored as a tie in every win rate and in Bradley-Terry: a verdict
  that flips with the order says the judge could not tell the replies apart;
- only one order ok (the other invalid, refused or never asked): that verdict alone,
  counted in ``n_single_order``.

Win rates: per model against the baseline, the shares of wins, ties and losses and the
``score`` = wins + ties / 2 (AlpacaEval's and Arena-Hard's convention), each with a
percentile interval from a bootstrap over dialogues (``conversation_id``; a row without
one is its own cluster). Bradley-Terry: with three or more models, strengths by maximum
likelihood over all matches (a tie is half a win for each side), on the Elo-like scale
``400 / ln 10 * beta + 1000`` with the baseline anchored at 1000, intervals from the same
dialogue bootstrap. A fit whose wins graph is not strongly connected (some model never
beat, or never lost to, the rest) has no finite maximum: undefined, with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from .stats import cluster_means, count_blocks, percentile_interval

ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0
OUTCOMES = ("win", "tie", "loss", "score", "inconsistent")
_KEYS = ["judge", "dimension", "item_id", "model_a", "model_b", "prompt_id", "sample"]
_NEWTON_STEPS = 100
_MAX_STEP = 2.0


def pairwise_results(
    pairwise: pd.DataFrame,
    *,
    baseline: str | None = None,
    variant: str | None = None,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any] | None:
    """The ``pairwise`` section of ``leaderboard.json``, or None when there are no rows.

    Keys: ``baseline``, ``models`` (baseline first, then by name), ``variant``,
    ``tie_rule``, ``consistency`` (per judge, dimension, model pair: matches, consistent,
    inconsistent, single-order), ``win_rates`` (per judge, dimension, model other than the
    baseline: win / tie / loss / score / inconsistent shares in 0-1 with intervals) and
    ``bradley_terry`` (per judge and dimension: Elo-scale ratings with intervals, or a
    reason). Raises :class:`UserError` for an unknown ``baseline`` or ``variant``.
    """
    if pairwise is None or not len(pairwise):
        return None
    rows, variant = _select_variant(pairwise, variant)
    matches = match_table(rows)
    models = _models(rows)
    if baseline is None:
        baseline = default_baseline(rows)
    elif baseline not in models:
        raise UserError(f"--baseline {baseline!r} is not a model in the pairwise judgments; "
                        f"models: {', '.join(models)}")
    models = [baseline] + [m for m in models if m != baseline]
    rng = np.random.default_rng(seed)
    return {
        "baseline": baseline, "models": models, "variant": variant,
        "rounds": rounds, "seed": seed, "confidence": confidence,
        "tie_rule": "a pair whose two orders disagree counts as a tie (MT-Bench)",
        "consistency": consistency(matches),
        "win_rates": win_rates(matches, baseline, models, rounds, rng, confidence),
        "bradley_terry": bradley_terry(matches, baseline, rounds, rng, confidence),
    }


def _select_variant(rows: pd.DataFrame, variant: str | None) -> tuple[pd.DataFrame, str]:
    variants = sorted(str(v) for v in rows["variant"].dropna().unique())
    if variant is None or variant not in variants:
        if variant is not None and len(variants) > 1:
            raise UserError(f"no pairwise judgments for variant {variant!r}; variants "
                            f"present: {', '.join(variants)}")
        variant = variants[0] if len(variants) == 1 else "default"
        if variant not in variants:
            raise UserError(f"the pairwise judgments hold several prompt variants "
                            f"({', '.join(variants)}); choose one with --variant")
    return rows[rows["variant"] == variant], variant


def _models(rows: pd.DataFrame) -> list[str]:
    names = set(rows["model_a"].astype("object")) | set(rows["model_b"].astype("object"))
    return sorted(str(m) for m in names)


def default_baseline(rows: pd.DataFrame) -> str:
    """The model in the most pairs (the hub of a baseline run); ties go to the model seen
    first in the rows, so an all-pairs run defaults to the first model judged."""
    pairs = rows[["model_a", "model_b"]].astype("object").drop_duplicates()
    seen = pd.unique(rows[["model_a", "model_b"]].astype("object").to_numpy().ravel())
    n_pairs = pd.concat([pairs["model_a"], pairs["model_b"]]).value_counts()
    first = {m: i for i, m in enumerate(seen)}
    return str(min(n_pairs.index, key=lambda m: (-n_pairs[m], first[m])))


def match_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per match: ``_KEYS``, ``cluster``, ``ab``/``ba`` verdicts, ``outcome``
    ("a", "b" or "tie", inconsistent pairs being ties), ``inconsistent`` and ``single``."""
    ok = rows[rows["status"] == "ok"]
    cols = _KEYS + ["order", "winner", "conversation_id"]
    ok = ok[cols].astype({c: "object" for c in cols if c != "sample"})
    ok["conversation_id"] = ok["conversation_id"].where(ok["conversation_id"].notna(),
                                                        ok["item_id"])
    ok["prompt_id"] = ok["prompt_id"].fillna("")
    if not len(ok):
        return pd.DataFrame(columns=_KEYS + ["cluster", "ab", "ba", "outcome",
                                             "inconsistent", "single"])
    table = (ok.groupby(_KEYS + ["order"], sort=True, dropna=False)["winner"].last()
             .unstack("order").reindex(columns=["ab", "ba"]))
    cluster = ok.groupby(_KEYS, sort=True, dropna=False)["conversation_id"].first()
    table = table.join(cluster.rename("cluster")).reset_index()
    both = table["ab"].notna() & table["ba"].notna()
    agree = both & (table["ab"] == table["ba"])
    table["inconsistent"] = both & ~agree
    table["single"] = ~both
    table["outcome"] = np.where(table["inconsistent"], "tie",
                                table["ab"].where(table["ab"].notna(), table["ba"]))
    table.columns.name = None
    return table


def consistency(matches: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (judge, dimension, model_a, model_b): how many matches kept their verdict when
    the order was swapped; ``inconsistent_rate`` is over matches judged in both orders."""
    out = []
    keys = ["judge", "dimension", "model_a", "model_b"]
    for key, grp in matches.groupby(keys, sort=True):
        both = int((~grp["single"]).sum())
        bad = int(grp["inconsistent"].sum())
        rec = dict(zip(keys, map(str, key))) | {
            "n_matches": len(grp), "n_both_orders": both, "n_consistent": both - bad,
            "n_inconsistent": bad, "n_single_order": int(grp["single"].sum()),
            "inconsistent_rate": bad / both if both else None}
        if not both:
            rec["inconsistent_rate_reason"] = "no pair judged in both orders"
        out.append(rec)
    return out


def _perspective(matches: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Matches involving the baseline, with ``model`` (the other one) and its outcome."""
    rows = matches[(matches["model_a"] == baseline) | (matches["model_b"] == baseline)]
    rows = rows[rows["model_a"] != rows["model_b"]]
    model_is_a = rows["model_b"] == baseline
    model = np.where(model_is_a, rows["model_a"], rows["model_b"])
    mine = np.where(model_is_a, "a", "b")
    won = rows["outcome"].to_numpy() == mine
    tie = rows["outcome"].to_numpy() == "tie"
    values = np.column_stack([won, tie, ~won & ~tie, won + 0.5 * tie,
                              rows["inconsistent"].to_numpy()]).astype(float)
    frame = pd.DataFrame(values, columns=list(OUTCOMES), index=rows.index)
    return pd.concat([rows[["judge", "dimension", "cluster", "single"]], frame],
                     axis=1).assign(model=model)


def win_rates(matches: pd.DataFrame, baseline: str, models: Sequence[str], rounds: int,
              rng: np.random.Generator, confidence: float) -> list[dict[str, Any]]:
    """Per (judge, dimension, model): shares against the baseline with dialogue-bootstrap
    intervals; every series resamples the same dialogues."""
    rows = _perspective(matches, baseline)
    if not len(rows):
        return []
    clusters, uniques = pd.factorize(rows["cluster"], sort=True)
    grouped = rows.groupby(["judge", "dimension", "model"], sort=True)
    sid = grouped.ngroup().to_numpy()
    n_series = int(sid.max()) + 1
    shape = (len(uniques), n_series * len(OUTCOMES))
    sums, counts = np.zeros(shape), np.zeros(shape)
    for k, name in enumerate(OUTCOMES):
        np.add.at(sums, (clusters, sid * len(OUTCOMES) + k), rows[name].to_numpy())
        np.add.at(counts, (clusters, sid * len(OUTCOMES) + k), 1.0)
    point, reps = cluster_means(sums, counts, rounds, rng)
    low, high = percentile_interval(reps, confidence)
    single = (counts > 0).sum(axis=0) <= 1  # one dialogue: no interval, not a zero width
    low, high = np.where(single, np.nan, low), np.where(single, np.nan, high)
    order = {m: i for i, m in enumerate(models)}
    out = []
    for (judge, dim, model), grp in grouped:
        s = grouped.ngroup().loc[grp.index[0]]
        rec: dict[str, Any] = {
            "judge": str(judge), "dimension": str(dim), "model": str(model),
            "baseline": baseline, "n_matches": len(grp),
            "n_dialogues": int(grp["cluster"].nunique()),
            "n_inconsistent": int(grp["inconsistent"].sum()),
            "n_single_order": int(grp["single"].sum())}
        for k, name in enumerate(OUTCOMES):
            c = s * len(OUTCOMES) + k
            rec[name] = {"value": _clean(point[c]), "ci_low": _clean(low[c]),
                         "ci_high": _clean(high[c])}
        out.append(rec)
    out.sort(key=lambda r: (r["judge"], r["dimension"], order.get(r["model"], 1 << 30)))
    return out


# --------------------------------------------------------------------------- Bradley-Terry


def bradley_terry(matches: pd.DataFrame, baseline: str, rounds: int,
                  rng: np.random.Generator, confidence: float) -> list[dict[str, Any]]:
    """Per (judge, dimension) with three or more models: Elo-scale strengths and intervals."""
    out = []
    for (judge, dim), grp in matches.groupby(["judge", "dimension"], sort=True):
        names = sorted(set(grp["model_a"]) | set(grp["model_b"]))
        rec: dict[str, Any] = {"judge": str(judge), "dimension": str(dim),
                               "n_matches": len(grp)}
        if len(names) < 3 or baseline not in names:
            why = ("fewer than 3 models" if len(names) < 3
                   else f"baseline {baseline!r} is not among these matches")
            out.append(rec | {"ratings": None, "ratings_reason": why})
            continue
        names = [baseline] + [m for m in names if m != baseline]
        rec |= _bt_record(grp, names, rounds, rng, confidence)
        out.append(rec)
    return out


def _bt_record(grp: pd.DataFrame, names: list[str], rounds: int, rng: np.random.Generator,
               confidence: float) -> dict[str, Any]:
    clusters, uniques = pd.factorize(grp["cluster"], sort=True)
    per_cluster = win_matrices(grp, names, clusters, len(uniques))
    total = per_cluster.sum(axis=0)
    point = fit_bradley_terry(total[None])[0]
    if not np.isfinite(point).all():
        return {"ratings": None, "ratings_reason": "no finite maximum-likelihood fit: "
                "some model never beat, or never lost to, the others"}
    flat = per_cluster.reshape(len(uniques), -1)
    reps = np.vstack([fit_bradley_terry((block @ flat).reshape(-1, len(names), len(names)))
                      for block in count_blocks(len(uniques), rounds, rng)])
    defined = int(np.isfinite(reps[:, 0]).sum())
    low, high = percentile_interval(ELO_SCALE * reps + ELO_BASE, confidence)
    games = (total + total.T).sum(axis=1)
    ratings = []
    for i, name in enumerate(names):
        entry: dict[str, Any] = {"model": name, "beta": float(point[i]),
                                 "elo": float(ELO_SCALE * point[i] + ELO_BASE),
                                 "ci_low": _clean(low[i]), "ci_high": _clean(high[i]),
                                 "n_matches": int(round(games[i]))}
        if defined * 2 < len(reps):
            entry.update(ci_low=None, ci_high=None, ci_reason=f"fit defined in only "
                         f"{defined} of {len(reps)} bootstrap rounds")
        ratings.append(entry)
    ratings.sort(key=lambda r: (-r["elo"], r["model"]))
    return {"ratings": ratings, "defined_rounds": defined}


def win_matrices(grp: pd.DataFrame, names: list[str], clusters: np.ndarray,
                 n_clusters: int) -> np.ndarray:
    """``W[c, i, j]``: wins of model i over model j in cluster c, a tie counting half."""
    index = {m: i for i, m in enumerate(names)}
    a = grp["model_a"].map(index).to_numpy()
    b = grp["model_b"].map(index).to_numpy()
    outcome = grp["outcome"].to_numpy()
    out = np.zeros((n_clusters, len(names), len(names)))
    a_pts = np.where(outcome == "a", 1.0, np.where(outcome == "tie", 0.5, 0.0))
    np.add.at(out, (clusters, a, b), a_pts)
    np.add.at(out, (clusters, b, a), 1.0 - a_pts)
    return out


def fit_bradley_terry(wins: np.ndarray) -> np.ndarray:
    """Maximum-likelihood strengths ``beta`` (natural-log odds) per model, column 0 fixed
    at 0, for a stack of win matrices ``wins[r, i, j]``; NaN rows have no finite maximum.

    Damped Newton on the concave log-likelihood ``sum W_ij log sigma(b_i - b_j)``,
    vectorised over the stack; a fit exists exactly when the graph "i beat j" is strongly
    connected (Zermelo 1929, Ford 1957).
    """
    wins = np.asarray(wins, dtype=float)
    n_rounds, k, _ = wins.shape
    games = wins + np.swapaxes(wins, 1, 2)
    beta = np.zeros((n_rounds, k))
    for _ in range(_NEWTON_STEPS):
        diff = beta[:, :, None] - beta[:, None, :]
        p = 1.0 / (1.0 + np.exp(-diff))
        grad = (wins - games * p).sum(axis=2)[:, 1:]
        w = games * p * (1.0 - p)
        hess = w - np.eye(k) * w.sum(axis=2)[:, :, None]
        step = np.linalg.solve(hess[:, 1:, 1:] - 1e-12 * np.eye(k - 1), grad[..., None])[..., 0]
        beta[:, 1:] -= np.clip(step, -_MAX_STEP, _MAX_STEP)
        if np.abs(step).max(initial=0.0) < 1e-10:
            break
    beta[~_strongly_connected(wins > 0)] = np.nan
    return beta


def _strongly_connected(edges: np.ndarray) -> np.ndarray:
    """Per stacked adjacency matrix: can every model reach every other along edges?"""
    k = edges.shape[1]
    reach = edges | np.eye(k, dtype=bool)
    for _ in range(max(1, math.ceil(math.log2(k)))):
        reach = (reach.astype(np.int32) @ reach.astype(np.int32)) > 0
    return reach.all(axis=(1, 2))


def _clean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
