"""Run totals for ``run.json`` and the CLI: statuses, score means, panel, agreement, pairwise.

This is a run report, not the leaderboard: no confidence intervals, no significance tests
(those live in ``csc_harness.analysis``). An item's score for a judge is the mean of its
``ok`` samples; a statistic that is undefined is None with a ``*_reason`` sibling.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

from ..contract import STATUSES
from .store import Record

__all__ = ["format_summary", "spearman", "summarize"]

def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, str | None]:
    """Spearman's rho with average ranks (as scipy's ``spearmanr``), or None and why not."""
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    if len(x) < 3:
        return None, f"needs at least 3 shared items, got {len(x)}"
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None, "a judge gave every shared item the same score"
    return sxy / (sxx * syy) ** 0.5, None


def _describe(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "median": None}
    return {"n": len(values), "mean": round(statistics.fmean(values), 4),
            "median": statistics.median(values)}


def _item_scores(records: Iterable[Record]) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """``{(judge, dimension): {(model, item_id): mean of ok sample scores}}``."""
    samples: dict[tuple[str, str], dict[tuple[str, str], list[float]]] = defaultdict(
        lambda: defaultdict(list))
    for r in records:
        if r.kind == "absolute" and r.status == "ok" and r.score is not None:
            samples[(r.judge, r.dimension)][(r.model, r.item_id)].append(r.score)
    return {jd: {k: statistics.fmean(v) for k, v in items.items()}
            for jd, items in samples.items()}


def _scores_block(items: dict[tuple[str, str], float]) -> dict[str, Any]:
    by_model: dict[str, list[float]] = defaultdict(list)
    for (model, _item), score in items.items():
        by_model[model].append(score)
    block = _describe(list(items.values()))
    block["models"] = {m: _describe(v) for m, v in sorted(by_model.items())}
    return block


def _agreement(a: dict[tuple[str, str], float], b: dict[tuple[str, str], float]) -> dict:
    shared = sorted(set(a) & set(b))
    x, y = [a[k] for k in shared], [b[k] for k in shared]
    if not shared:
        return {"n": 0, "exact": None, "within_1": None, "spearman": None,
                "spearman_reason": "no item scored by both judges"}
    rho, why = spearman(x, y)
    out = {"n": len(shared),
           "exact": round(sum(round(p) == round(q) for p, q in zip(x, y)) / len(shared), 4),
           "within_1": round(sum(abs(p - q) <= 1 for p, q in zip(x, y)) / len(shared), 4),
           "spearman": None if rho is None else round(rho, 4)}
    if why:
        out["spearman_reason"] = why
    return out


def _pairwise(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """Per judge and dimension: wins, ties and the order-inconsistency rate.

    A pair counts once both orders have an ok verdict; verdicts that disagree between the
    two orders count as a tie and as inconsistent.
    """
    orders: dict[tuple, dict[str, str]] = defaultdict(dict)
    models: dict[tuple[str, str], tuple[str, str]] = {}
    for r in records:
        if r.kind == "pairwise" and r.status == "ok" and r.order and r.winner:
            orders[(r.judge, r.dimension, r.item_id, r.sample)][r.order] = r.winner
            models[(r.judge, r.dimension)] = (r.model_a or "", r.model_b or "")
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    tallies: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"pairs": 0, "wins_a": 0, "wins_b": 0, "ties": 0, "inconsistent": 0,
                 "one_order_only": 0})
    for (judge, dim, _item, _k), seen in orders.items():
        tally = tallies[(judge, dim)]
        if len(seen) < 2:
            tally["one_order_only"] += 1
            continue
        tally["pairs"] += 1
        if seen["ab"] != seen["ba"]:
            tally["inconsistent"] += 1
            tally["ties"] += 1
        else:
            tally[{"a": "wins_a", "b": "wins_b", "tie": "ties"}[seen["ab"]]] += 1
    for (judge, dim), tally in sorted(tallies.items()):
        n = tally["pairs"]
        model_a, model_b = models[(judge, dim)]
        out[judge][dim] = {"model_a": model_a, "model_b": model_b, **tally,
                           "inconsistency_rate": round(tally["inconsistent"] / n, 4) if n else None,
                           "win_rate_a": round((tally["wins_a"] + tally["ties"] / 2) / n, 4)
                           if n else None}
    return dict(out)


def summarize(records: Sequence[Record], judges: Sequence[str],
              dimensions: Sequence[str]) -> dict[str, Any]:
    """Totals over ``records`` (the rows of this run's plan, old and new), keyed by judge
    and dimension in the order given."""
    statuses = {j: {d: dict.fromkeys(STATUSES, 0) for d in dimensions} for j in judges}
    for r in records:
        statuses[r.judge][r.dimension][r.status] += 1
    items = _item_scores(records)
    by_judge = {j: {d: _scores_block(items[(j, d)]) for d in dimensions if (j, d) in items}
                for j in judges}
    dims = [d for d in dimensions if any((j, d) in items for j in judges)]
    panel, agreement = {}, {}
    if len(judges) > 1:
        for dim in dims:
            per_judge = [items.get((j, dim), {}) for j in judges]
            keys = set().union(*per_judge)
            panel[dim] = _scores_block({k: statistics.fmean([s[k] for s in per_judge if k in s])
                                        for k in keys})
            agreement[dim] = {f"{a} | {b}": _agreement(items.get((a, dim), {}),
                                                       items.get((b, dim), {}))
                              for a, b in combinations(judges, 2)}
    known = [r.cost_usd for r in records if r.cost_usd is not None and not r.cached]
    return {
        "judgments": len(records),
        "statuses": statuses,
        "scores": by_judge,
        "panel": panel,
        "agreement": agreement,
        "pairwise": _pairwise(records),
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in records),
        "completion_tokens": sum(r.completion_tokens or 0 for r in records),
        "cost_usd": round(sum(known), 6),
        "cost_unknown_judgments": sum(1 for r in records if r.cost_usd is None
                                      and r.status != "error" and not r.cached),
    }


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_summary(summary: dict[str, Any]) -> list[str]:
    """One line per judge and dimension, then panel and agreement lines."""
    lines = []
    for judge, dims in summary["statuses"].items():
        for dim, counts in dims.items():
            status = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
            pair = summary["pairwise"].get(judge, {}).get(dim)
            if pair is not None:
                rate = pair["inconsistency_rate"]
                lines.append(f"{judge} · {dim}: {status} · {pair['model_a']} wins "
                             f"{pair['wins_a']}, {pair['model_b']} wins {pair['wins_b']}, ties "
                             f"{pair['ties']} · order-inconsistent {pair['inconsistent']}"
                             f"/{pair['pairs']} ({_num(None if rate is None else 100 * rate)}%)")
                continue
            block = summary["scores"].get(judge, {}).get(dim, {"mean": None, "models": {}})
            models = " · ".join(f"{m} {_num(v['mean'])}" for m, v in block["models"].items())
            lines.append(f"{judge} · {dim}: {status} · mean {_num(block['mean'])}"
                         + (f" · {models}" if models else ""))
    for dim, block in summary["panel"].items():
        models = " · ".join(f"{m} {_num(v['mean'])}" for m, v in block["models"].items())
        lines.append(f"panel · {dim}: mean {_num(block['mean'])} · {models}")
    for dim, pairs in summary["agreement"].items():
        for names, agr in pairs.items():
            exact = "n/a" if agr["exact"] is None else f"{100 * agr['exact']:.0f}%"
            within = "n/a" if agr["within_1"] is None else f"{100 * agr['within_1']:.0f}%"
            lines.append(f"agreement · {dim} · {names}: exact {exact}, within 1 {within}, "
                         f"Spearman {_num(agr['spearman'])} (n={agr['n']})")
    return lines
