"""Judge-prompt ablations, analysis side: compare prompt variants on evidence.

Input: judgment rows of several variants (the ``variant`` field) over the same items, and
optionally human ratings. For each variant: invalid/refused rates, tokens and cost, the
rank correlation of its model leaderboard with the baseline variant's, and per dimension
its item-level Spearman with the mean human score (dialogue-bootstrap interval) plus a
paired bootstrap test of that correlation against the baseline's on the units both cover.

Running the variants through the judge module (``csc-harness ablate``) is a separate
driver; this module never calls a provider.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from .agreement import align_units
from .rows import Judgments
from .scores import PANEL, ScoreField, add_panel, clean, item_scores
from .stats import (
    Estimate,
    Undefined,
    bootstrap_correlations,
    bootstrap_p,
    correlation,
    count_blocks,
    estimate,
    percentile_interval,
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
    """
    absolute = judgments.absolute if isinstance(judgments, Judgments) else judgments
    variants = sorted(str(v) for v in absolute["variant"].unique())
    if baseline not in variants:
        raise UserError(f"baseline variant {baseline!r} is not in the judgments; variants "
                        f"present: {', '.join(variants)}")
    order = [baseline] + [v for v in variants if v != baseline]
    scores = {v: _primary_items(absolute[absolute["variant"] == v], score) for v in order}
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
        entries.append(entry)
    return {"baseline": baseline,
            "settings": {"rounds": rounds, "seed": seed, "confidence": confidence,
                         "score": score, "resample": "conversation_id"},
            "variants": entries}


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
        entry["spearman"] = _spearman(mine, rounds, rng, confidence).to_dict()
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
    counts = np.vstack(list(count_blocks(int(units["cluster"].max()) + 1, rounds, rng)))
    reps = bootstrap_correlations(units["judge"], human, counts[:, units["cluster"]],
                                  ("spearman",))["spearman"]
    return estimate(value, p, reps, confidence)


def _paired_difference(mine, base, rounds, rng, confidence) -> dict[str, Any]:
    """Spearman(variant) - Spearman(baseline) on shared units, one resample for both."""
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
    counts = np.vstack(list(count_blocks(int(clusters.max()) + 1, rounds, rng)))[:, clusters]
    reps = (bootstrap_correlations(x_m, human, counts, ("spearman",))["spearman"]
            - bootstrap_correlations(x_b, human, counts, ("spearman",))["spearman"])
    low, high = percentile_interval(reps, confidence)
    return {"n": len(shared), "diff": float(diff), "ci_low": clean(low[0]),
            "ci_high": clean(high[0]), "p": clean(bootstrap_p(reps)[0])}
