"""Judge-prompt ablations, analysis side: compare prompt variants on evidence.

Input: judgment rows of several variants (the ``variant`` field) over the same items, and
optionally human ratings. For each variant: invalid/refused rates, tokens and cost, the
rank correlation of its model leaderboard with the baseline variant's, and per dimension
its item-level Spearman with the mean human score (dialogue-bootstrap interval) plus a
paired test of that correlation against the baseline's on the units both cover: the
sign-flip test over dialogues of :mod:`.signflip` (swap the two variants' scores within
whole dialogues), valid with few dialogues; see :mod:`.stats` for why.

Running the variants through the judge module (``csc-harness ablate``) is a separate
driver; this module never calls a provider.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _sps

from ..controls import CONTROL_PREFIX
from ..errors import UserError
from .agreement import align_units
from .judge_check import has_controls, judge_check
from .rows import Judgments
from .scores import PANEL, ScoreField, add_panel, clean, item_scores
from .signflip import min_dialogues, swap_test
from .stats import (
    Estimate,
    Undefined,
    bootstrap_correlations,
    correlation,
    count_blocks,
    estimate,
    percentile_interval,
    weighted_pearson,
)


def compare_variants(
    judgments: Judgments | pd.DataFrame,
    human: pd.DataFrame | None = None,
    *,
    baseline: str = "default",
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    score: ScoreField = "score",
) -> dict[str, Any]:
    """``{"baseline", "settings", "variants": [...]}``, one entry per variant, baseline first.

    Each entry: ``variant``, ``describe`` (judges, modes, prompt ids, scales seen),
    ``n_rows``, ``status`` rates, ``prompt_tokens``, ``completion_tokens``, ``cost_usd``
    (known costs summed; ``cost_unknown_rows`` counts the rest), ``leaderboard``
    (Spearman and Kendall of model scores vs the baseline's) and, with human ratings,
    ``human``: per dimension ``n``, ``spearman`` and ``vs_baseline`` (difference in
    Spearman, variant minus baseline, with interval and p on shared units).
    ``discrimination``: with control replies in the rows (``control:<kind>`` models, left
    out of everything else), the cell's judge check per dimension (see
    :mod:`.judge_check`), else None. Without human ratings the cells are ranked by it
    (``ranked_by = "discrimination"``, each entry's ``rank`` and ``mean_discrimination``):
    a judge that tells known-good from known-bad replies apart is the evidence left.
    """
    absolute = judgments.absolute if isinstance(judgments, Judgments) else judgments
    variants = sorted(str(v) for v in absolute["variant"].unique())
    if baseline not in variants:
        raise UserError(f"baseline variant {baseline!r} is not in the judgments; variants "
                        f"present: {', '.join(variants)}")
    order = [baseline] + [v for v in variants if v != baseline]
    is_control = absolute["model"].astype(str).str.startswith(CONTROL_PREFIX)
    models_only = absolute[~is_control]  # control replies test the judge; they are no model
    scores = {v: _primary_items(models_only[models_only["variant"] == v], score)
              for v in order}
    model_scores = {v: _model_scores(items) for v, items in scores.items()}
    if human is not None:
        human = human.astype({c: "object" for c in ("item_id", "model", "dimension")})
    entries = []
    for v in order:
        rows = absolute[absolute["variant"] == v]
        entry = {"variant": v, **_costs(rows),
                 "leaderboard": _rank_agreement(model_scores[v], model_scores[baseline])}
        if human is not None:
            entry["human"] = _human(scores[v], scores[baseline], human, v == baseline,
                                    rounds, seed, v, confidence)
        entry["discrimination"] = _discrimination(rows, v, rounds, seed, confidence, score)
        entries.append(entry)
    ranked_by = "discrimination" if human is None and any(
        e["discrimination"] for e in entries) else None
    if ranked_by:
        _rank_by_discrimination(entries)
    return {"baseline": baseline,
            "settings": {"rounds": rounds, "seed": seed, "confidence": confidence,
                         "score": score, "resample": "conversation_id"},
            "ranked_by": ranked_by, "variants": entries,
            "ranking": [e["variant"] for e in sorted(
                entries, key=lambda e: (e.get("rank") is None, e.get("rank") or 0))]
            if ranked_by else None}


def _discrimination(rows: pd.DataFrame, variant: str, rounds: int, seed: int,
                    confidence: float, score: ScoreField) -> dict[str, Any] | None:
    """Per dimension, the judge check of the cell's primary judge (the panel when several):
    ``discrimination``, interval, ``n``, ``pass`` and ``verdict``; None without controls."""
    if not has_controls(rows):
        return None
    result = judge_check(rows, rounds=rounds, seed=seed, confidence=confidence,
                         variant=variant, score=score)
    judges = result["judges"]
    primary = PANEL if PANEL in judges else next(iter(judges))
    keep = ("discrimination", "ci_low", "ci_high", "n", "pass", "verdict")
    return {"judge": primary, "pass": judges[primary]["pass"],
            "dimensions": {d: {k: e.get(k) for k in keep}
                           for d, e in judges[primary]["dimensions"].items()}}


def _rank_by_discrimination(entries: list[dict[str, Any]]) -> None:
    """Without human ratings, cells are ranked by the mean over dimensions of their
    discrimination (higher is better), then of its lower bound; cells without controls
    come last, unranked. Sets ``rank`` and ``mean_discrimination`` on each entry."""
    def means(entry: dict[str, Any]) -> tuple[float, float] | None:
        dims = (entry["discrimination"] or {}).get("dimensions", {}).values()
        points = [d["discrimination"] for d in dims if d["discrimination"] is not None]
        lows = [d["ci_low"] if d["ci_low"] is not None else d["discrimination"]
                for d in dims if d["discrimination"] is not None]
        return (float(np.mean(points)), float(np.mean(lows))) if points else None

    scored = {e["variant"]: means(e) for e in entries}
    ranked = sorted((v for v, m in scored.items() if m is not None),
                    key=lambda v: (-scored[v][0], -scored[v][1], v))  # type: ignore[index]
    for entry in entries:
        m = scored[entry["variant"]]
        entry["mean_discrimination"] = None if m is None else m[0]
        entry["rank"] = ranked.index(entry["variant"]) + 1 if m is not None else None


def _primary_items(rows: pd.DataFrame, score: ScoreField) -> pd.DataFrame:
    items = add_panel(item_scores(rows, score=score), [])
    judges = items["judge"].unique()
    key = PANEL if len(judges) > 1 else judges[0]
    out = items[items["judge"] == key]
    return out.astype({c: "object" for c in ("item_id", "model", "dimension")})


def _model_scores(items: pd.DataFrame) -> pd.Series:
    """Per model: the mean over dimensions of scale-normalised (0-1) dimension means."""
    norm = (items["score"] - items["scale_min"]) / (items["scale_max"] - items["scale_min"])
    table = items.assign(norm=norm).groupby(["model", "dimension"])["norm"].mean()
    return table.unstack("dimension").mean(axis=1)


def _costs(rows: pd.DataFrame) -> dict[str, Any]:
    n = len(rows)
    status = rows["status"].astype("object").value_counts()
    cost = rows["cost_usd"]
    describe = {name: sorted({str(v) for v in rows[name].dropna().unique()})
                for name in ("judge", "mode", "reference_guided", "prompt_id")}
    describe["scale"] = sorted({f"{int(a)}-{int(b)}" for a, b in
                                rows[["scale_min", "scale_max"]].drop_duplicates().to_numpy()})
    return {
        "describe": describe, "n_rows": n,
        "status": {f"{s}_rate": (int(status.get(s, 0)) / n if n else None)
                   for s in ("invalid", "refused", "error")},
        "prompt_tokens": int(rows["prompt_tokens"].sum()),
        "completion_tokens": int(rows["completion_tokens"].sum()),
        "cost_usd": float(cost.sum()) if cost.notna().any() else None,
        "cost_unknown_rows": int(cost.isna().sum()),
    }


def _rank_agreement(mine: pd.Series, base: pd.Series) -> dict[str, Any]:
    common = sorted(set(mine.dropna().index) & set(base.dropna().index))
    out: dict[str, Any] = {"n_models": len(common)}
    for method in ("spearman", "kendall"):
        try:
            out[method] = correlation(mine[common].to_numpy(), base[common].to_numpy(),
                                      method, ("variant", "baseline"))[0]
        except Undefined as exc:
            out.update({method: None, f"{method}_reason": str(exc)})
    return out


def _human(items, base_items, human, is_baseline, rounds, seed, variant, confidence):
    out: dict[str, Any] = {}
    for dim in sorted(str(d) for d in human["dimension"].unique()):
        ratings = human[human["dimension"] == dim]
        mine = align_units(items[items["dimension"] == dim], ratings)
        rng = np.random.default_rng([seed, zlib.crc32(f"{variant}\x1f{dim}".encode())])
        entry: dict[str, Any] = {"n": len(mine["judge"])}
        entry["spearman"] = (_spearman(mine, rounds, rng, confidence).to_dict()
                             | {"n_dialogues": len(np.unique(mine["cluster"]))})
        if is_baseline:
            entry["vs_baseline"] = None
            entry["vs_baseline_reason"] = "this is the baseline"
        else:
            base = align_units(base_items[base_items["dimension"] == dim], ratings)
            entry["vs_baseline"] = _paired_difference(mine, base, rounds, rng, confidence)
        out[dim] = entry
    return out


def _spearman(units, rounds, rng, confidence) -> Estimate:
    human = np.nanmean(units["raters"], axis=0)
    try:
        value, p = correlation(units["judge"], human, "spearman", ("judge", "human"))
    except Undefined as exc:
        return Estimate(None, reason=str(exc))
    n_clusters = int(units["cluster"].max()) + 1
    counts = np.vstack(list(count_blocks(n_clusters, rounds, rng)))
    reps = bootstrap_correlations(units["judge"], human, counts[:, units["cluster"]],
                                  ("spearman",))["spearman"]
    return estimate(value, p, reps, confidence, n_clusters=len(np.unique(units["cluster"])))


def _paired_difference(mine, base, rounds, rng, confidence) -> dict[str, Any]:
    """Spearman(variant) - Spearman(baseline) on shared units: p from swapping the two
    variants' scores within whole dialogues (the sign-flip test), interval from one
    dialogue bootstrap for both, withheld below :func:`.signflip.min_dialogues`."""
    shared = sorted(set(mine["keys"]) & set(base["keys"]))
    if len(shared) < 3:
        return {"n": len(shared), "diff": None,
                "diff_reason": f"fewer than 3 units judged by both variants (n={len(shared)})"}
    pos_m = {k: i for i, k in enumerate(mine["keys"])}
    pos_b = {k: i for i, k in enumerate(base["keys"])}
    im = np.array([pos_m[k] for k in shared])
    ib = np.array([pos_b[k] for k in shared])
    human = np.nanmean(mine["raters"][:, im], axis=0)
    x_m, x_b = mine["judge"][im], base["judge"][ib]
    try:
        diff = (correlation(x_m, human, "spearman", ("variant", "human"))[0]
                - correlation(x_b, human, "spearman", ("baseline", "human"))[0])
    except Undefined as exc:
        return {"n": len(shared), "diff": None, "diff_reason": str(exc)}
    clusters = pd.factorize(mine["cluster"][im])[0]
    n_dialogues = int(clusters.max()) + 1
    out: dict[str, Any] = {"n": len(shared), "n_dialogues": n_dialogues, "diff": float(diff)}
    if n_dialogues == 1:
        return out | {"ci_low": None, "ci_high": None, "ci_reason": "one dialogue: no interval",
                      "p": None, "p_reason": "one dialogue: no test", "significant": False}
    rank_h = _sps.rankdata(human)[None, :]

    def spearman_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ones = np.ones_like(a)
        return (weighted_pearson(_sps.rankdata(a, axis=1), rank_h, ones)
                - weighted_pearson(_sps.rankdata(b, axis=1), rank_h, ones))

    p = swap_test(spearman_gap, x_m, x_b, clusters, rounds, rng)
    out |= {"p": p, "significant": p <= 1.0 - confidence}
    need = min_dialogues(confidence)
    if n_dialogues < need:
        return out | {"ci_low": None, "ci_high": None,
                      "ci_reason": f"{n_dialogues} dialogues: too few for a "
                                   f"{100 * confidence:g}% interval (needs {need})"}
    counts = np.vstack(list(count_blocks(n_dialogues, rounds, rng)))[:, clusters]
    reps = (bootstrap_correlations(x_m, human, counts, ("spearman",))["spearman"]
            - bootstrap_correlations(x_b, human, counts, ("spearman",))["spearman"])
    low, high = percentile_interval(reps, confidence)
    return out | {"ci_low": clean(low[0]), "ci_high": clean(high[0])}
