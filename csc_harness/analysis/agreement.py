"""Agreement between judges and human raters, read against agreement among the humans.

For each judge (and the ``panel`` when there are several) and each dimension:

- item level: the units are (item_id, model) pairs rated by at least one human and scored
  by the judge; the judge's item score is set against the mean human score.
- system level: the units are models; each side is the model's mean over those same
  (item, model) pairs, so the judge's leaderboard is set against the humans' leaderboard.

On those units: Spearman, Kendall tau-b and Pearson with a 95% dialogue-bootstrap interval
and scipy's p-value; Krippendorff's ordinal alpha among the raters and with the judge added
as one more rater; and the human leave-one-out baseline: each rater's Spearman against the
mean of the other raters, averaged over raters. Anything undefined is null with a reason.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import UserError
from .rows import Judgments
from .scores import OVERALL, PANEL, ScoreField, add_panel, item_scores, select_variant
from .stats import (
    METHODS,
    Estimate,
    Undefined,
    bootstrap_correlations,
    correlation,
    count_blocks,
    estimate,
    krippendorff_alpha,
    rowwise_correlations,
)

LevelName = Literal["item", "system"]
LEVELS: tuple[LevelName, ...] = ("item", "system")


def correlate(
    judgments: Judgments | pd.DataFrame,
    human: pd.DataFrame,
    *,
    levels: Sequence[LevelName] = LEVELS,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    variant: str | None = None,
    score: ScoreField = "score",
) -> dict[str, Any]:
    """``{"item": {JUDGE: {DIMENSION: {...}}}, "system": {...}}`` as in ``correlation.json``.

    Each DIMENSION entry holds ``n``, ``spearman``/``kendall``/``pearson`` (each
    ``{"value", "ci_low", "ci_high", "p"}``), ``alpha_humans``, ``alpha_with_judge`` and
    ``human_loo_spearman``; a null value has a sibling ``"<name>_reason"``. A level not
    in ``levels`` is null with ``"<level>_reason"``. ``ratings`` counts the human ratings:
    ``total``, ``used``, ``not_judged`` (no judgment of that item, model and dimension) and
    ``outside_scale`` (a score outside the rubric's ``scales[dimension]``); both kinds are
    left out of every statistic. Raises UserError when no human rating matches a judged
    (item, model, dimension).
    """
    absolute = judgments.absolute if isinstance(judgments, Judgments) else judgments
    rows, _variant = select_variant(absolute, variant)
    items = add_panel(item_scores(rows, score=score), [])
    items = items[items["dimension"] != OVERALL]
    human, coverage = _matching_ratings(items, human)
    out: dict[str, Any] = {"ratings": coverage}
    for level in LEVELS:
        if level not in levels:
            out[level] = None
            out[f"{level}_reason"] = f"not requested (--level {', '.join(levels)})"
            continue
        out[level] = {}
        for judge in _judge_order(items):
            for dim in sorted(str(d) for d in human["dimension"].unique()):
                judged = items[(items["judge"] == judge) & (items["dimension"] == dim)]
                ratings = human[human["dimension"] == dim]
                units = align_units(judged, ratings)
                compute = _item_level if level == "item" else _system_level
                rng = _rng(seed, level, judge, dim)
                out[level].setdefault(judge, {})[dim] = compute(units, rounds, rng, confidence)
    return out


def _judge_order(items: pd.DataFrame) -> list[str]:
    judges = sorted(str(j) for j in items["judge"].unique() if j != PANEL)
    return judges + ([PANEL] if (items["judge"] == PANEL).any() else [])


def _matching_ratings(items: pd.DataFrame,
                      human: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ratings of judged (item, model, dimension)s on the rubric's scale, and the
    counts of those left out (``ratings`` in correlation.json): none is dropped silently."""
    human = human.astype({c: "object" for c in ("item_id", "model", "dimension", "rater")})
    judged = items[["item_id", "model", "dimension"]].astype("object").drop_duplicates()
    matched = human.merge(judged, on=["item_id", "model", "dimension"])
    if not len(matched):
        dims = ", ".join(sorted(map(str, human["dimension"].unique())))
        jdims = ", ".join(sorted(map(str, judged["dimension"].unique())))
        raise UserError("no human rating matches a judged (item_id, model, dimension): "
                        f"ratings cover dimensions {dims}; judgments cover {jdims}. Check "
                        "that item ids and model names are spelled as in judgments.jsonl")
    scales = (items.astype({"dimension": "object"}).groupby("dimension")
              [["scale_min", "scale_max"]].agg({"scale_min": "min", "scale_max": "max"}))
    low = matched["dimension"].map(scales["scale_min"]).astype(float)
    high = matched["dimension"].map(scales["scale_max"]).astype(float)
    inside = ~((matched["score"] < low) | (matched["score"] > high))
    coverage = {"total": len(human), "used": int(inside.sum()),
                "not_judged": len(human) - len(matched),
                "outside_scale": int((~inside).sum()),
                "scales": {str(d): [_plain(r.scale_min), _plain(r.scale_max)]
                           for d, r in scales.iterrows()}}
    if not coverage["used"]:
        raise UserError(f"every matching human rating is outside the rubric's scale "
                        f"({', '.join(f'{d} {lo}-{hi}' for d, (lo, hi) in coverage['scales'].items())}"
                        "): rate on the judge's scale")
    return matched[inside.to_numpy()], coverage


def _plain(value: Any) -> float | int | None:
    value = float(value)
    return None if not np.isfinite(value) else int(value) if value.is_integer() else value


def align_units(judged: pd.DataFrame, ratings: pd.DataFrame) -> dict[str, Any]:
    """Arrays over the (item_id, model) units both sides cover, in one order.

    ``judged``: item scores of one judge and dimension; ``ratings``: human ratings of that
    dimension. Returns ``judge`` (n,), ``raters`` (raters x n, NaN = not rated),
    ``cluster`` (dialogue index per unit), ``model`` (model index per unit), ``n_models``
    and ``keys`` (the (item_id, model) pairs).
    """
    judged = judged.astype({"item_id": "object", "model": "object",
                            "conversation_id": "object"})
    wide = ratings.pivot_table(index=["item_id", "model"], columns="rater", values="score",
                               aggfunc="first", observed=True)
    both = judged.set_index(["item_id", "model"])[["score", "conversation_id"]].join(
        wide, how="inner")
    raters = [c for c in both.columns if c not in ("score", "conversation_id")]
    return {
        "judge": both["score"].to_numpy(dtype=float),
        "raters": both[raters].to_numpy(dtype=float).T,  # raters x units, NaN = not rated
        "cluster": pd.factorize(both["conversation_id"])[0],
        "model": pd.factorize(both.index.get_level_values("model"))[0],
        "n_models": both.index.get_level_values("model").nunique(),
        "keys": list(both.index),
    }


def _alpha_and_loo(raters: np.ndarray, judge: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, data in (("alpha_humans", raters), ("alpha_with_judge",
                                                  np.vstack([raters, judge[None, :]]))):
        try:
            out[name] = krippendorff_alpha(data, "ordinal")
        except Undefined as exc:
            out.update({name: None, f"{name}_reason": str(exc)})
    try:
        out["human_loo_spearman"] = leave_one_out_spearman(raters)
    except Undefined as exc:
        out.update(human_loo_spearman=None, human_loo_spearman_reason=str(exc))
    return out


def leave_one_out_spearman(raters: np.ndarray) -> float:
    """Mean over raters of Spearman(rater, mean of the other raters) on units both cover.

    ``raters`` is raters x units with NaN for missing. Raters whose correlation is
    undefined (fewer than 3 shared units, constant scores) are left out of the mean;
    raises Undefined when none is left.
    """
    if raters.shape[0] < 2:
        raise Undefined("fewer than 2 raters")
    values, reasons = [], []
    for r in range(raters.shape[0]):
        others = np.delete(raters, r, axis=0)
        rest = _nanmean(others)
        keep = np.isfinite(raters[r]) & np.isfinite(rest)
        try:
            values.append(correlation(raters[r, keep], rest[keep], "spearman",
                                      ("rater", "other raters'"))[0])
        except Undefined as exc:
            reasons.append(str(exc))
    if not values:
        raise Undefined(f"no rater has a defined correlation with the others ({reasons[0]})")
    return float(np.mean(values))


def _nanmean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """nanmean without numpy's warning for units no rater covered (those stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator per (level, judge, dimension): adding a judge changes no other result."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(keys).encode("utf-8"))])


def _correlations(x, y, replicates, confidence, n_clusters: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        try:
            value, p = correlation(x, y, method, ("judge", "human"))
            est = estimate(value, p, replicates[method], confidence, n_clusters=n_clusters)
        except Undefined as exc:
            est = Estimate(None, reason=str(exc))
        out[method] = est.to_dict()
    return out


def _item_level(units: dict[str, Any], rounds: int, rng: np.random.Generator,
                confidence: float) -> dict[str, Any]:
    judge, raters = units["judge"], units["raters"]
    human = _nanmean(raters)
    n = len(judge)
    reps: dict[str, np.ndarray] = {m: np.full(rounds, np.nan) for m in METHODS}
    if n >= 3:
        n_clusters = int(units["cluster"].max()) + 1
        counts = np.vstack(list(count_blocks(n_clusters, rounds, rng)))
        reps = bootstrap_correlations(judge, human, counts[:, units["cluster"]])
    n_clusters = int(units["cluster"].max()) + 1 if n else 0
    return {"n": n, **_correlations(judge, human, reps, confidence, n_clusters),
            **_alpha_and_loo(raters, judge)}


def _system_level(units: dict[str, Any], rounds: int, rng: np.random.Generator,
                  confidence: float) -> dict[str, Any]:
    judge, raters, model, k = units["judge"], units["raters"], units["model"], units["n_models"]
    human = _nanmean(raters)
    judge_m, human_m = _model_means(judge, model, k), _model_means(human, model, k)
    reps: dict[str, np.ndarray] = {m: np.full(rounds, np.nan) for m in METHODS}
    if k >= 3:
        n_clusters = int(units["cluster"].max()) + 1
        counts = np.vstack(list(count_blocks(n_clusters, rounds, rng)))
        w = counts[:, units["cluster"]]
        onehot = np.eye(k)[model]
        den = w @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            jb, hb = (w * judge) @ onehot / den, (w * human) @ onehot / den
        ok = np.isfinite(jb).all(axis=1)
        rowwise = rowwise_correlations(np.where(ok[:, None], jb, 0.0),
                                       np.where(ok[:, None], hb, 0.0))
        reps = {m: np.where(ok, v, np.nan) for m, v in rowwise.items()}
    rater_means = np.vstack([_model_means(r, model, k, skip_nan=True) for r in raters])
    n_clusters = int(units["cluster"].max()) + 1 if len(judge) else 0
    return {"n": k, **_correlations(judge_m, human_m, reps, confidence, n_clusters),
            **_alpha_and_loo(rater_means, judge_m)}


def _model_means(values: np.ndarray, model: np.ndarray, k: int,
                 skip_nan: bool = False) -> np.ndarray:
    keep = np.isfinite(values) if skip_nan else np.ones(len(values), bool)
    sums = np.bincount(model[keep], weights=values[keep], minlength=k)
    counts = np.bincount(model[keep], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
