"""Agreement between the judges of a panel, for the leaderboard and the report.

The same three numbers ``judge`` prints after a run (exact, within one point, Spearman),
computed from the leaderboard's item scores so the report states them too. Units are
(model, item) pairs scored by both judges; an item score is the mean of a judge's ok
samples, rounded for the exact-match share. Spearman comes from scipy via
:func:`.stats.correlation`; undefined (fewer than 3 pairs, a constant judge) is null with
``spearman_reason``.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from .scores import OVERALL, PANEL
from .stats import Undefined, correlation


def panel_agreement(items: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per dimension and pair of judges: ``dimension``, ``judges`` [a, b],
    ``n`` (shared units), ``n_dialogues``, ``exact`` and ``within_1`` (shares, 0-1),
    ``spearman`` (or null with ``spearman_reason``). Empty with fewer than two judges.

    ``items`` is :func:`.scores.item_scores` output; the derived ``panel`` judge and
    ``overall`` dimension are left out (they agree with their parts by construction).
    """
    rows = items[(items["judge"] != PANEL) & (items["dimension"] != OVERALL)]
    judges = sorted(str(j) for j in rows["judge"].unique())
    if len(judges) < 2:
        return []
    table = rows.astype({"judge": "object", "model": "object", "item_id": "object",
                         "dimension": "object"}).pivot_table(
        index=["dimension", "model", "item_id"], columns="judge", values="score",
        aggfunc="first")
    dialogues = (rows.astype({"model": "object", "item_id": "object",
                              "dimension": "object"})
                 .drop_duplicates(["dimension", "model", "item_id"])
                 .set_index(["dimension", "model", "item_id"])["conversation_id"])
    out = []
    for dim in sorted(str(d) for d in table.index.get_level_values(0).unique()):
        part = table.loc[dim]
        for a, b in combinations(judges, 2):
            both = part[[a, b]].dropna() if {a, b} <= set(part.columns) else part.iloc[:0]
            out.append(_pair(dim, a, b, both, dialogues))
    return out


def _pair(dim: str, a: str, b: str, both: pd.DataFrame, dialogues: pd.Series) -> dict:
    x, y = both[a].to_numpy(float), both[b].to_numpy(float)
    rec: dict[str, Any] = {"dimension": dim, "judges": [a, b], "n": len(x)}
    if not len(x):
        return rec | {"n_dialogues": 0, "exact": None, "within_1": None, "spearman": None,
                      "spearman_reason": "no item scored by both judges"}
    keys = [(dim, m, i) for m, i in both.index]
    rec["n_dialogues"] = int(dialogues.reindex(keys).nunique())
    rec["exact"] = float(np.mean(np.round(x) == np.round(y)))
    rec["within_1"] = float(np.mean(np.abs(x - y) <= 1))
    try:
        rec["spearman"] = correlation(x, y, "spearman", (a, b))[0]
    except Undefined as exc:
        rec |= {"spearman": None, "spearman_reason": str(exc)}
    return rec
