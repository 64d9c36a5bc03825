"""The leaderboard: per-model judge scores with dialogue-bootstrap intervals, metrics beside.

The result is a plain JSON-ready dict (written as ``leaderboard.json``; the report layer
renders it). Its keys: ``settings``, ``models`` (ranked), ``comparisons`` (paired tests of
adjacent models), ``breakdowns`` (by stage, strategy, topic, language), ``bias``,
``notes``, ``provenance``, ``pairwise`` (win rates against a baseline and
Bradley-Terry ratings, see :mod:`.pairwise`; null without pairwise rows), ``agreement``
(between the judges of a panel, see :mod:`.panel`) and ``paper`` (the paper's reported
rows, see :mod:`.reference`; null unless asked for). A model's ``metric_intervals``
holds dialogue-bootstrap intervals of its automatic metrics (see :mod:`.automatic`).
Every score interval resamples dialogues (``conversation_id``) with
one seeded generator; differences between adjacent models are paired by item and tested
with a sign-flip permutation test over dialogues, valid with few dialogues (see
:mod:`.stats`). A score from a single dialogue has no interval (``ci_reason``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..contract import STATUSES
from ..controls import CONTROL_PREFIX
from ..errors import UserError
from ..framework import CODES, EMBEDDED_LABEL, Stage
from . import bias as _bias
from .automatic import match_model, with_intervals
from .judge_check import run_check
from .pairwise import pairwise_results
from .panel import panel_agreement
from .reference import paper_section
from .rows import Judgments
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
from .signflip import PairedTest, min_dialogues, sign_flip_test
from .stats import cluster_means, percentile_interval

BREAKDOWNS = ("stage", "strategy", "topic", "language")
_DENSE_CELLS = 1 << 23
ONE_DIALOGUE = "one dialogue: no interval"


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
    baseline: str | None = None,
    paper_rows: bool = False,
    data_counts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the leaderboard from judgment rows and automatic-metric records.

    ``judgments`` is :func:`~csc_harness.analysis.load_judgments` output (or its absolute
    rows); ``metrics`` is :func:`~csc_harness.analysis.load_automatic_metrics` output.
    Scores are on the judges' own scale (e.g. 1-5); intervals are percentile intervals at
    ``confidence`` from ``rounds`` dialogue-bootstrap rounds seeded with ``seed``.
    Models are ranked by the primary judge's (the panel's when several) overall score.
    Pairwise rows add the ``pairwise`` section (``baseline``: default the model in most
    pairs); pairwise rows alone make a board whose models are unranked. ``paper_rows``
    adds the paper's reported rows, shown only when ``data_counts`` (the dataset's, see
    :func:`.reference.data_counts`) are the full CSConv's.
    """
    metrics = with_intervals(metrics, rounds=rounds, seed=seed, confidence=confidence)
    paper = _paper(metrics, data_counts) if paper_rows else None
    absolute = judgments.absolute if isinstance(judgments, Judgments) else judgments
    pairwise_rows = judgments.pairwise if isinstance(judgments, Judgments) else None
    has_pairs = pairwise_rows is not None and len(pairwise_rows) > 0
    if baseline is not None and not has_pairs:
        raise UserError(f"--baseline {baseline!r} needs pairwise judgments "
                        "(`csc-harness judge --pairwise`); these hold none")
    pair = pairwise_results(pairwise_rows, baseline=baseline, variant=variant, rounds=rounds,
                            seed=seed, confidence=confidence) if has_pairs else None
    if not len(absolute) and pair is not None:
        return _pairwise_board(judgments, pairwise_rows, pair, metrics, score) | {
            "agreement": [], "paper": paper}
    rows, variant = select_variant(absolute, variant)
    notes: list[str] = []
    items = item_scores(rows, score=score)
    judges = sorted(str(j) for j in items["judge"].unique())
    items = add_overall(add_panel(items, notes), notes)
    keys = judges + ([PANEL] if len(judges) > 1 else [])
    primary = keys[-1]
    dims = _dimension_order(items)
    means = items.groupby(["judge", "model", "dimension"], observed=True)["score"].mean()
    # Control replies (control:<kind>) are reference rows: scored like models, never
    # ranked, compared, broken down or counted in the bias checks.
    is_ref = items["model"].astype(str).str.startswith(CONTROL_PREFIX)
    order = {key: [m for m in _ranking(means, key, items) if not m.startswith(CONTROL_PREFIX)]
             for key in keys}
    summary = _bootstrap(items, order, by, rounds, seed, confidence)
    notes.extend(_small_run_notes(items, confidence))
    notes.extend(_run_notes(judgments))
    models = _model_rows(rows, items, order[primary], summary["main"], keys, metrics)
    controls = [m for m in models if m["model"].startswith(CONTROL_PREFIX)]
    models = [m for m in models if not m["model"].startswith(CONTROL_PREFIX)]
    check = run_check(rows, rounds=rounds, seed=seed, confidence=confidence,
                      variant=variant, score=score)
    scales = _scales(items)
    rows, items = rows[~rows["model"].astype(str).str.startswith(CONTROL_PREFIX)], items[~is_ref]
    flagged = [m["model"] for m in models if m["embedded"]]
    if flagged:
        notes.insert(0, f"{', '.join(flagged)}: {EMBEDDED_LABEL}")
    return {
        "settings": {
            "rounds": rounds, "seed": seed, "confidence": confidence, "variant": variant,
            "score": score, "resample": "conversation_id", "primary_judge": primary,
            "judges": keys, "dimensions": dims, "breakdowns": list(by),
            "scales": scales,
            "tokenization": next((r["tokenization"] for r in metrics
                                  if r.get("tokenization")), None),
        },
        "models": models,
        "controls": controls,
        "judge_check": check,
        "comparisons": summary["comparisons"],
        "breakdowns": _without_controls(summary["breakdowns"]),
        "bias": _bias.diagnostics(items[~items["judge"].isin([PANEL])
                                        & (items["dimension"] != OVERALL)],
                                  rows, pairwise_rows),
        "notes": notes,
        "provenance": _provenance(judgments),
        "pairwise": _add_pairwise_models(models, pair),
        "agreement": panel_agreement(items),
        "paper": paper,
    }


def _without_controls(breakdowns: dict[str, Any]) -> dict[str, Any]:
    """Breakdown records of the candidate models only (controls are reference rows)."""
    for fields in breakdowns.values():
        for data in fields.values():
            data["rows"] = [r for r in data["rows"]
                            if not r["model"].startswith(CONTROL_PREFIX)]
    return breakdowns


def _paper(metrics: Sequence[dict[str, Any]], counts: dict[str, Any] | None):
    measured = [iv["n_dialogues"] for rec in metrics for iv in rec["intervals"].values()
                if iv.get("n_dialogues") is not None]
    return paper_section(counts, measured)


def _set_metrics(entry: dict[str, Any], rec: dict[str, Any]) -> None:
    """A model's reported metrics for one setting and, apart, their intervals."""
    entry["metrics"][rec["setting"]] = dict(rec["metrics"]) | {"source": rec["source"]}
    entry.setdefault("metric_intervals", {})[rec["setting"]] = rec.get("intervals", {})


def _add_pairwise_models(models: list[dict[str, Any]], pair: dict[str, Any] | None):
    """Models judged only pairwise get an unranked row, so every table lists them."""
    if pair is not None:
        known = {m["model"] for m in models}
        models.extend({"model": m, "embedded": False, "scores": {}, "status": {"n_rows": 0},
                       "metrics": {}, "same_family_judges": [], "rank": None}
                      for m in pair["models"] if m not in known)
    return pair


def _pairwise_board(judgments, pairwise_rows: pd.DataFrame, pair: dict[str, Any],
                    metrics: Sequence[dict[str, Any]], score: str) -> dict[str, Any]:
    """A board from pairwise rows alone: no scores or breakdowns, the pairwise section and
    position checks; models in the pairwise section's order (baseline first), unranked."""
    rows = pairwise_rows[pairwise_rows["variant"] == pair["variant"]]
    judges = sorted(str(j) for j in rows["judge"].unique())
    sides = pd.concat([rows[["judge", "model_a", "embedded"]].set_axis(
        ["judge", "model", "embedded"], axis=1), rows[["judge", "model_b", "embedded"]]
        .set_axis(["judge", "model", "embedded"], axis=1)]).astype({"model": "object",
                                                                    "judge": "object"})
    embedded = sides.groupby("model")["embedded"].max()
    models = [{"model": m, "embedded": bool(embedded.get(m, False)), "scores": {},
               "status": {"n_rows": 0}, "metrics": {}, "rank": None,
               "same_family_judges": [j for j in judges if _bias.same_family(j, m)]}
              for m in pair["models"]]
    for rec in metrics:
        name = match_model(rec["model"], [m["model"] for m in models])
        for m in models:
            if m["model"] == name:
                _set_metrics(m, rec)
    flagged = [m["model"] for m in models if m["embedded"]]
    notes = [f"{', '.join(flagged)}: {EMBEDDED_LABEL}"] if flagged else []
    notes.append("pairwise judgments only: no absolute scores, models are not ranked by "
                 "score; see the pairwise section")
    return {
        "settings": {
            "rounds": pair["rounds"], "seed": pair["seed"], "confidence": pair["confidence"],
            "variant": pair["variant"], "score": score, "resample": "conversation_id",
            "primary_judge": judges[0], "judges": judges, "dimensions": [],
            "breakdowns": [], "scales": {},
            "tokenization": next((r["tokenization"] for r in metrics
                                  if r.get("tokenization")), None),
        },
        "models": models, "comparisons": [], "breakdowns": {},
        "bias": {"length": [], "distribution": [],
                 "position": _bias.position_consistency(pairwise_rows),
                 "same_family": _bias.family_flags(sides.drop_duplicates(["judge", "model"]))},
        "notes": notes, "provenance": _provenance(judgments), "pairwise": pair,
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
    """One bootstrap for every score series (main and breakdowns); adjacent differences
    get the sign-flip test over dialogues (:func:`_comparisons`)."""
    clusters, uniques = pd.factorize(items["conversation_id"], sort=True)
    parts: list[tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]] = []
    main = ["judge", "model", "dimension"]
    parts.append(_series(items, main, clusters, items["score"].to_numpy()))
    for field in by:
        parts.append(_series(items, main + [field], clusters, items["score"].to_numpy()))
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
    single = n_dialogues == 1  # every resample is the data: a zero-width range, not a CI
    stats = pd.DataFrame({"mean": point, "ci_low": np.where(single, np.nan, low),
                          "ci_high": np.where(single, np.nan, high),
                          "n_dialogues": n_dialogues})
    tables = []
    for (keys_df, *_rest), start, stop in zip(parts, offsets[:-1], offsets[1:]):
        tables.append(pd.concat([keys_df.reset_index(drop=True),
                                 stats.iloc[start:stop].reset_index(drop=True)], axis=1))
    comparisons = _comparisons(items, order, uniques, rounds, seed, confidence)
    return {"main": tables[0], "breakdowns": _breakdown_records(tables[1:1 + len(by)], by),
            "comparisons": comparisons}


def _comparisons(items, order, uniques, rounds, seed, confidence) -> list[dict[str, Any]]:
    """Adjacent models per judge and dimension: mean paired difference, p and interval
    from the sign-flip test over dialogues (valid with few dialogues, see :mod:`.stats`)."""
    diffs = _differences(items, order)
    if not len(diffs):
        return []
    keys_df, sid, cl, val = _series(diffs, ["judge", "higher", "lower", "dimension"],
                                    uniques.get_indexer(diffs["conversation_id"]),
                                    diffs["diff"].to_numpy())
    shape = (len(uniques), len(keys_df))
    sums = sparse.coo_matrix((val, (cl, sid)), shape=shape).tocsc()
    counts = sparse.coo_matrix((np.ones_like(val), (cl, sid)), shape=shape).tocsc()
    if shape[0] * shape[1] <= _DENSE_CELLS:
        sums, counts = sums.toarray(), counts.toarray()
    # A generator of its own: the score intervals' resamples stay what they were.
    test = sign_flip_test(sums, counts, rounds, np.random.default_rng([seed, 1]), confidence)
    comparisons = _comparison_records(keys_df, test, confidence)
    rank = {(j, m): i for j, models in order.items() for i, m in enumerate(models)}
    comparisons.sort(key=lambda c: (c["judge"], rank[(c["judge"], c["higher"])],
                                    c["dimension"] == OVERALL, c["dimension"]))
    return comparisons


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


def _comparison_records(table: pd.DataFrame, test: PairedTest,
                        confidence: float) -> list[dict]:
    """Significant means ``p <= 1 - confidence``, i.e. the interval excludes 0; null p or
    interval carry ``p_reason`` / ``ci_reason`` (one dialogue, or too few for 95%)."""
    records = []
    for i, row in enumerate(table.itertuples(index=False)):
        p = clean(test.p[i])
        rec = {
            "judge": str(row.judge), "dimension": str(row.dimension),
            "higher": str(row.higher), "lower": str(row.lower),
            "n_items": int(row.n_items), "n_dialogues": int(test.n_clusters[i]),
            "diff": clean(test.diff[i]), "ci_low": clean(test.ci_low[i]),
            "ci_high": clean(test.ci_high[i]), "p": p,
            "significant": bool(p is not None and p <= 1.0 - confidence),
            "confidence": confidence, "test": "sign-flip permutation over dialogues",
        }
        for name, reason in (("ci_reason", test.ci_reason[i]), ("p_reason", test.p_reason[i])):
            if reason:
                rec[name] = reason
        records.append(rec)
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
                        "n_items": int(r["n_items"]), "n_dialogues": int(r["n_dialogues"]),
                        **_single(r)}
                       for r in rows.to_dict("records")]
            out.setdefault(str(judge), {})[field] = {"groups": groups, "rows": records}
    return out


def _run_notes(judgments: Judgments | pd.DataFrame) -> list[str]:
    """Notes the judge runs recorded (options a server did not honour, ...)."""
    if not isinstance(judgments, Judgments):
        return []
    return [note for run in judgments.runs.values() if isinstance(run, dict)
            for note in run.get("notes") or [] if isinstance(note, str)]


def _small_run_notes(items: pd.DataFrame, confidence: float) -> list[str]:
    """Say when the run has too few dialogues for a comparison to be significant."""
    n = int(items["conversation_id"].nunique())
    need = min_dialogues(confidence)
    if n == 1:
        return ["one dialogue: no intervals and no significance tests"]
    if n < need:
        return [f"only {n} dialogues: no difference can be significant at "
                f"{100 * confidence:g}% (a paired test over dialogues needs {need}) and "
                "score intervals from so few dialogues are rough"]
    return []


def _single(rec: dict[str, Any]) -> dict[str, str]:
    """The reason a score from one dialogue has no interval (resampling it changes nothing)."""
    return {"ci_reason": ONE_DIALOGUE} if int(rec["n_dialogues"]) == 1 else {}


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
            "n_dialogues": int(rec["n_dialogues"]), **_single(rec)}
    for rec in metrics:
        name = match_model(rec["model"], list(by_model)) or rec["model"]
        entry = by_model.setdefault(name, {"model": name, "embedded": False, "scores": {},
                                           "status": {"n_rows": 0}, "metrics": {}})
        _set_metrics(entry, rec)
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
            runs[path] = {k: run[k] for k in ("versions", "totals", "config", "started_at", "updated_at")
                          if k in run}
    return {"sources": judgments.sources, "runs": runs}
