"""The leaderboard: per-model judge scores with dialogue-bootstrap intervals, metrics beside.

The result is a plain JSON-ready dict (written as ``leaderboard.json``; the report layer
renders it). Its keys: ``settings``, ``models`` (ranked), ``comparisons`` (paired tests of
adjacent models), ``breakdowns`` (by stage, strategy, topic, language), ``bias``,
``notes`` and ``provenance``. Every interval resamples dialogues (``conversation_id``) with
one seeded generator, and every series sees the same resampled dialogues, so differences
between models are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..framework import CODES, EMBEDDED_LABEL, Stage
from . import bias as _bias
from .automatic import match_model
from .rows import STATUSES, Judgments
from .scores import (
    OVERALL,
    PANEL,
    ScoreField,
    add_overall,
    add_panel,
    clean,
    item_scores,
    select_variant,
)
from .stats import bootstrap_p, cluster_means, percentile_interval

BREAKDOWNS = ("stage", "strategy", "topic", "language")
_DENSE_CELLS = 1 << 23


def leaderboard(
    judgments: Judgments | pd.DataFrame,
    metrics: Sequence[dict[str, Any]] = (),
    *,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    variant: str | None = None,
    score: ScoreField = "score",
    by: Sequence[str] = BREAKDOWNS,
) -> dict[str, Any]:
    """Build the leaderboard from judgment rows and automatic-metric records.

    ``judgments`` is :func:`~csc_harness.analysis.load_judgments` output (or its absolute
    rows); ``metrics`` is :func:`~csc_harness.analysis.load_automatic_metrics` output.
    Scores are on the judges' own scale (e.g. 1-5); intervals are percentile intervals at
    ``confidence`` from ``rounds`` dialogue-bootstrap rounds seeded with ``seed``.
    Models are ranked by the primary judge's (the panel's when several) overall score.
    """
    absolute = judgments.absolute if isinstance(judgments, Judgments) else judgments
    pairwise_rows = judgments.pairwise if isinstance(judgments, Judgments) else None
    rows, variant = select_variant(absolute, variant)
    notes: list[str] = []
    items = item_scores(rows, score=score)
    judges = sorted(str(j) for j in items["judge"].unique())
    items = add_overall(add_panel(items, notes), notes)
    keys = judges + ([PANEL] if len(judges) > 1 else [])
    primary = keys[-1]
    dims = _dimension_order(items)
    means = items.groupby(["judge", "model", "dimension"], observed=True)["score"].mean()
    order = {key: _ranking(means, key, items) for key in keys}
    summary = _bootstrap(items, order, by, rounds, seed, confidence)
    models = _model_rows(rows, items, order[primary], summary["main"], keys, metrics)
    flagged = [m["model"] for m in models if m["embedded"]]
    if flagged:
        notes.insert(0, f"{', '.join(flagged)}: {EMBEDDED_LABEL}")
    return {
        "settings": {
            "rounds": rounds, "seed": seed, "confidence": confidence, "variant": variant,
            "score": score, "resample": "conversation_id", "primary_judge": primary,
            "judges": keys, "dimensions": dims, "breakdowns": list(by),
            "scales": _scales(items),
            "tokenization": next((r["tokenization"] for r in metrics
                                  if r.get("tokenization")), None),
        },
        "models": models,
        "comparisons": summary["comparisons"],
        "breakdowns": summary["breakdowns"],
        "bias": _bias.diagnostics(items[~items["judge"].isin([PANEL])
                                        & (items["dimension"] != OVERALL)],
                                  rows, pairwise_rows),
        "notes": notes,
        "provenance": _provenance(judgments),
    }


def _dimension_order(items: pd.DataFrame) -> list[str]:
    dims = sorted(str(d) for d in items["dimension"].unique() if d != OVERALL)
    return dims + ([OVERALL] if (items["dimension"] == OVERALL).any() else [])


def _ranking(means: pd.Series, key: str, items: pd.DataFrame) -> list[str]:
    """Models best first by overall score, else by the mean of scale-normalised dimensions."""
    if key not in means.index.get_level_values(0):
        return []
    table = means.loc[key].unstack("dimension")
    if OVERALL in table:
        rank = table[OVERALL]
    else:
        scales = items[items["judge"] == key].groupby("dimension", observed=True)[
            ["scale_min", "scale_max"]].first()
        lo, hi = scales["scale_min"], scales["scale_max"]
        rank = ((table - lo) / (hi - lo)).mean(axis=1)
    rank = rank.dropna()
    return sorted((str(m) for m in rank.index), key=lambda m: (-rank[m], m))


def _bootstrap(items, order, by, rounds, seed, confidence) -> dict[str, Any]:
    """One bootstrap for every series: main scores, breakdowns and adjacent differences."""
    clusters, uniques = pd.factorize(items["conversation_id"], sort=True)
    parts: list[tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]] = []
    main = ["judge", "model", "dimension"]
    parts.append(_series(items, main, clusters, items["score"].to_numpy()))
    for field in by:
        parts.append(_series(items, main + [field], clusters, items["score"].to_numpy()))
    diffs = _differences(items, order)
    if len(diffs):
        dclusters = uniques.get_indexer(diffs["conversation_id"])
        parts.append(_series(diffs, ["judge", "higher", "lower", "dimension"], dclusters,
                             diffs["diff"].to_numpy()))
    offsets = np.cumsum([0] + [len(p[0]) for p in parts])
    total = int(offsets[-1])
    sid = np.concatenate([p[1] + off for p, off in zip(parts, offsets)])
    cl = np.concatenate([p[2] for p in parts])
    val = np.concatenate([p[3] for p in parts])
    shape = (len(uniques), total)
    sums = sparse.coo_matrix((val, (cl, sid)), shape=shape).tocsr()
    counts = sparse.coo_matrix((np.ones_like(val), (cl, sid)), shape=shape).tocsr()
    n_dialogues = np.asarray((counts > 0).sum(axis=0)).ravel()
    if shape[0] * shape[1] <= _DENSE_CELLS:
        sums, counts = sums.toarray(), counts.toarray()
    point, reps = cluster_means(sums, counts, rounds, np.random.default_rng(seed))
    low, high = percentile_interval(reps, confidence)
    stats = pd.DataFrame({"mean": point, "ci_low": low, "ci_high": high,
                          "n_dialogues": n_dialogues})
    tables = []
    for (keys_df, *_rest), start, stop in zip(parts, offsets[:-1], offsets[1:]):
        tables.append(pd.concat([keys_df.reset_index(drop=True),
                                 stats.iloc[start:stop].reset_index(drop=True)], axis=1))
    comparisons: list[dict[str, Any]] = []
    if len(diffs):
        p = bootstrap_p(reps[:, offsets[-2]:offsets[-1]])
        comparisons = _comparison_records(tables[-1], p, confidence)
        rank = {(j, m): i for j, models in order.items() for i, m in enumerate(models)}
        comparisons.sort(key=lambda c: (c["judge"], rank[(c["judge"], c["higher"])],
                                        c["dimension"] == OVERALL, c["dimension"]))
    return {"main": tables[0], "breakdowns": _breakdown_records(tables[1:1 + len(by)], by),
            "comparisons": comparisons}


def _series(frame: pd.DataFrame, keys: list[str], clusters: np.ndarray, values: np.ndarray):
    grouped = frame.groupby(keys, observed=True, sort=True)
    sid = grouped.ngroup().to_numpy()
    keys_df = grouped.size().rename("n_items").reset_index()
    return keys_df, sid, clusters, values


def _differences(items: pd.DataFrame, order: dict[str, list[str]]) -> pd.DataFrame:
    """Per-item score differences of adjacent models (higher-ranked minus lower) per judge."""
    frames = []
    cols = ["dimension", "item_id", "conversation_id", "score"]
    for judge, models in order.items():
        rows = items[items["judge"] == judge]
        by_model = {m: r[cols] for m, r in rows.groupby("model", observed=True)}
        for higher, lower in pairwise(models):
            a, b = by_model[higher], by_model[lower]
            both = a.merge(b[["dimension", "item_id", "score"]], on=["dimension", "item_id"],
                           suffixes=("_a", "_b"))
            both = both.assign(diff=both["score_a"] - both["score_b"], judge=judge,
                               higher=higher, lower=lower)
            frames.append(both[["judge", "higher", "lower", "dimension", "item_id",
                                "conversation_id", "diff"]])
    if not frames:
        return pd.DataFrame()
    out = pd.concat([f.astype({"dimension": "object", "item_id": "object",
                               "conversation_id": "object"}) for f in frames],
                    ignore_index=True)
    return out


def _comparison_records(table: pd.DataFrame, p: np.ndarray, confidence: float) -> list[dict]:
    records = []
    for row, pval in zip(table.itertuples(index=False), p):
        low, high = clean(row.ci_low), clean(row.ci_high)
        records.append({
            "judge": str(row.judge), "dimension": str(row.dimension),
            "higher": str(row.higher), "lower": str(row.lower),
            "n_items": int(row.n_items), "n_dialogues": int(row.n_dialogues),
            "diff": clean(row.mean), "ci_low": low, "ci_high": high, "p": clean(pval),
            "significant": bool(low is not None and (low > 0 or high < 0)),
            "confidence": confidence,
        })
    return records


def _group_order(field: str, values: list[str]) -> list[str]:
    if field == "stage":
        ranks = {s.value: i for i, s in enumerate(Stage)}
    elif field == "strategy":
        ranks = {c: i for i, c in enumerate(CODES)}
    else:
        ranks = {}
    return sorted(values, key=lambda v: (ranks.get(v, len(ranks)), v))


def _breakdown_records(tables: list[pd.DataFrame], by: Sequence[str]) -> dict[str, Any]:
    """``{judge: {field: {"groups": [...], "rows": [{group, model, dimension, ...}]}}}``."""
    out: dict[str, Any] = {}
    for field, table in zip(by, tables):
        for judge, rows in table.groupby("judge", observed=True, sort=True):
            groups = _group_order(field, sorted({str(g) for g in rows[field]}))
            records = [{"group": str(r[field]), "model": str(r["model"]),
                        "dimension": str(r["dimension"]), "mean": clean(r["mean"]),
                        "ci_low": clean(r["ci_low"]), "ci_high": clean(r["ci_high"]),
                        "n_items": int(r["n_items"]), "n_dialogues": int(r["n_dialogues"])}
                       for r in rows.to_dict("records")]
            out.setdefault(str(judge), {})[field] = {"groups": groups, "rows": records}
    return out


def _status_counts(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    counts = rows.groupby(["model", "status"], observed=True).size().unstack(fill_value=0)
    out = {}
    for model, row in counts.iterrows():
        n = int(row.sum())
        entry: dict[str, Any] = {"n_rows": n}
        for status in STATUSES:
            k = int(row.get(status, 0))
            entry[status] = k
            if status != "ok":
                entry[f"{status}_rate"] = k / n if n else None
        out[str(model)] = entry
    return out


def _model_rows(rows, items, ranked, main, keys, metrics) -> list[dict[str, Any]]:
    status = _status_counts(rows)
    judged = sorted(set(status) | {str(m) for m in items["model"].unique()})
    embedded = rows.groupby("model", observed=True)["embedded"].max()
    by_model: dict[str, dict[str, Any]] = {
        m: {"model": m, "embedded": bool(embedded.get(m, False)), "scores": {},
            "status": status.get(m, {"n_rows": 0}), "metrics": {}}
        for m in judged}
    for rec in main.to_dict("records"):
        entry = by_model[str(rec["model"])]["scores"].setdefault(str(rec["judge"]), {})
        entry[str(rec["dimension"])] = {
            "mean": clean(rec["mean"]), "ci_low": clean(rec["ci_low"]),
            "ci_high": clean(rec["ci_high"]), "n_items": int(rec["n_items"]),
            "n_dialogues": int(rec["n_dialogues"])}
    for rec in metrics:
        name = match_model(rec["model"], list(by_model)) or rec["model"]
        entry = by_model.setdefault(name, {"model": name, "embedded": False, "scores": {},
                                           "status": {"n_rows": 0}, "metrics": {}})
        entry["metrics"][rec["setting"]] = dict(rec["metrics"]) | {"source": rec["source"]}
        entry["embedded"] = entry["embedded"] or bool(rec.get("embedded"))
    judges = [k for k in keys if k != PANEL]
    for entry in by_model.values():
        entry["same_family_judges"] = [j for j in judges
                                       if _bias.same_family(j, entry["model"])]
    order = ranked + sorted(m for m in by_model if m not in ranked)
    return [by_model[m] | {"rank": i + 1 if m in ranked else None}
            for i, m in enumerate(order)]


def _scales(items: pd.DataFrame) -> dict[str, list[int]]:
    first = items.groupby("dimension", observed=True)[["scale_min", "scale_max"]].first()
    return {str(d): [int(r.scale_min), int(r.scale_max)] for d, r in first.iterrows()}


def _provenance(judgments: Judgments | pd.DataFrame) -> dict[str, Any]:
    if not isinstance(judgments, Judgments):
        return {}
    runs = {}
    for path, run in judgments.runs.items():
        if isinstance(run, dict):
            runs[path] = {k: run[k] for k in ("versions", "totals", "config", "created")
                          if k in run}
    return {"sources": judgments.sources, "runs": runs}
