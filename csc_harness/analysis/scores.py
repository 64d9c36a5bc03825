"""From judged samples to item scores: the one place that defines a judge's score for an item.

A judge's score for an item (one candidate reply, one dimension) is the mean of its ``ok``
samples. With several judges a ``panel`` judge is added: per item, the mean of the judges'
item scores. With several dimensions on one scale an ``overall`` dimension is added: per
item, the mean over all dimensions (items missing a dimension are left out of it).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ..errors import UserError

PANEL = "panel"
OVERALL = "overall"
UNKNOWN = "(unknown)"
ScoreField = Literal["score", "weighted_score"]
META = ("conversation_id", "stage", "strategy", "topic", "language", "reply_chars",
        "scale_min", "scale_max")


def select_variant(absolute: pd.DataFrame, variant: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of one prompt variant: the one asked for, the only one, or ``default``."""
    if not len(absolute):
        raise UserError("no absolute judgment rows (scores): pairwise rows alone make no "
                        "leaderboard; judge without --pairwise too")
    variants = sorted(str(v) for v in absolute["variant"].dropna().unique())
    if variant is None:
        if len(variants) == 1:
            variant = variants[0]
        elif "default" in variants:
            variant = "default"
        else:
            raise UserError(f"the judgments hold several prompt variants ({', '.join(variants)});"
                            " choose one with --variant")
    elif variant not in variants:
        raise UserError(f"no judgments for variant {variant!r}; variants present: "
                        f"{', '.join(variants) or 'none'}")
    return absolute[absolute["variant"] == variant], variant


def item_scores(absolute: pd.DataFrame, *, score: ScoreField = "score") -> pd.DataFrame:
    """One row per (judge, model, dimension, item_id): the mean over ok samples.

    Columns: judge, model, dimension, item_id, score, n_samples, embedded and the item
    metadata (conversation_id, stage, strategy, topic, language, reply_chars, scale_min,
    scale_max). Missing metadata reads ``(unknown)``. Raises UserError when one judge uses
    two scales for one dimension.
    """
    ok = absolute[(absolute["status"] == "ok") & absolute[score].notna()]
    if not len(ok):
        counts = absolute["status"].astype("object").value_counts()
        raise UserError(f"no usable {score!r} in {len(absolute)} judgment rows ("
                        + ", ".join(f"{k} {v}" for k, v in counts.items())
                        + "): nothing to score; see the raw answers in judgments.jsonl")
    keys = ["judge", "model", "dimension", "item_id"]
    grouped = ok.groupby(keys, observed=True, sort=False)
    agg = {"score": (score, "mean"), "n_samples": (score, "size"),
           "embedded": ("embedded", "max")}
    agg.update({m: (m, "first") for m in META})
    items = grouped.agg(**agg).reset_index()
    _check_scales(ok)
    for name in ("stage", "strategy", "topic", "language"):
        col = items[name].astype("object").where(items[name].notna(), UNKNOWN)
        items[name] = col.astype("category")
    for name in ("judge", "model", "dimension", "item_id", "conversation_id"):
        items[name] = items[name].astype("category")
    return items


def _check_scales(ok: pd.DataFrame) -> None:
    scales = ok.groupby(["judge", "dimension"], observed=True)[["scale_min", "scale_max"]].nunique()
    bad = scales[(scales > 1).any(axis=1)]
    if len(bad):
        judge, dim = bad.index[0]
        raise UserError(f"judge {judge!r} uses more than one scale for dimension {dim!r}; "
                        "analyse the runs separately or choose one --variant")


def add_panel(items: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Append ``panel`` rows (mean over judges per item) when there are several judges.

    A dimension whose judges use different scales gets no panel score (noted in ``notes``).
    """
    judges = items["judge"].unique()
    if len(judges) < 2:
        return items
    scales = items.groupby("dimension", observed=True)[["scale_min", "scale_max"]].nunique()
    mixed = set(scales.index[(scales > 1).any(axis=1)])
    for dim in sorted(mixed):
        notes.append(f"no panel score for {dim!r}: its judges use different scales")
    base = items[~items["dimension"].isin(mixed)]
    grouped = base.groupby(["model", "dimension", "item_id"], observed=True, sort=False)
    agg = {"score": ("score", "mean"), "n_samples": ("judge", "size"),
           "embedded": ("embedded", "max")}
    agg.update({m: (m, "first") for m in META})
    panel = grouped.agg(**agg).reset_index()
    panel["judge"] = PANEL
    return _concat(items, panel)


def add_overall(items: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Append the ``overall`` dimension per judge when it has 2+ dimensions on one scale."""
    parts = []
    for judge, rows in items.groupby("judge", observed=True, sort=False):
        dims = rows["dimension"].unique()
        if len(dims) < 2:
            continue
        if rows["scale_min"].nunique() > 1 or rows["scale_max"].nunique() > 1:
            notes.append(f"no overall score for judge {judge!r}: its dimensions use "
                         "different scales")
            continue
        grouped = rows.groupby(["model", "item_id"], observed=True, sort=False)
        agg = {"score": ("score", "mean"), "n_samples": ("dimension", "size"),
               "embedded": ("embedded", "max")}
        agg.update({m: (m, "first") for m in META})
        overall = grouped.agg(**agg).reset_index()
        overall = overall[overall["n_samples"] == len(dims)]
        overall["judge"], overall["dimension"] = judge, OVERALL
        parts.append(overall)
    return _concat(items, *parts) if parts else items


_TEXT = ("judge", "model", "dimension", "item_id", "conversation_id", "stage", "strategy",
         "topic", "language")


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    """Stack item tables, keeping text columns categorical (no million-row object copies)."""
    from pandas.api.types import union_categoricals

    columns = list(frames[0].columns)
    data = {}
    for name in columns:
        if name in _TEXT:
            parts = [pd.Categorical(f[name]) if not isinstance(f[name].dtype, pd.CategoricalDtype)
                     else f[name].array for f in frames]
            data[name] = union_categoricals(parts)
        else:
            data[name] = np.concatenate([f[name].to_numpy() for f in frames])
    return pd.DataFrame(data)


def clean(value: float | np.floating | None) -> float | None:
    """A JSON-safe float: NaN and None become None."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None
