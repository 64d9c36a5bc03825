"""The judge check: can a judge tell the reference reply from control replies of known quality?

Input: judgment rows (:func:`~csc_harness.analysis.load_judgments` output) holding
``control:gold`` and at least one other ``control:<kind>`` model (see
:data:`csc_harness.controls.CONTROLS`). For one judge, dimension and control kind,
*discrimination* is the share of items where the judge scores gold strictly above the
control, a tie counting one half: 1 is perfect, 0.5 is chance (a constant judge), below
0.5 the judge prefers the control. A dimension's own discrimination pools the pairs of
every control expected to lower it.

Intervals come from the leaderboard's dialogue-clustered bootstrap
(:func:`~csc_harness.analysis.stats.cluster_means`, one seeded generator, every series
resampled on the same dialogues). A dimension passes when its lower bound is above
``threshold`` (default :data:`DEFAULT_THRESHOLD`) and the padded control is not preferred
to gold beyond chance (padded's interval is not entirely below 0.5).

Result (``judge_check.json``)::

    {"judges": {"<judge>": {"pass": bool,
      "dimensions": {"<dim>": {"pass": bool, "discrimination": float, "ci_low": float,
         "ci_high": float, "n": int, "verdict": str,
         "controls": {"<kind>": {"discrimination", "ci_low", "ci_high", "n"}}}}}},
     "settings": {...}}

``discrimination`` and its bounds are null (with ``reason``) for a dimension no control
was expected to lower; ``verdict`` says in plain words what passed or failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..controls import CONTROL_PREFIX, CONTROLS, EVERY, GOLD, expected_to_lower
from ..errors import UserError
from .rows import Judgments
from .scores import PANEL, ScoreField, add_panel, clean, item_scores, select_variant
from .stats import cluster_means, percentile_interval

__all__ = ["DEFAULT_THRESHOLD", "JSON_FILE", "MARKDOWN_FILE", "controls_table",
           "coverage_text", "findings", "has_controls", "judge_check", "judge_check_markdown", "run_check"]

DEFAULT_THRESHOLD = 0.75
JSON_FILE = "judge_check.json"
MARKDOWN_FILE = "judge_check.md"
POOLED = "*pooled*"
PADDED = "padded"
CHANCE = 0.5


def judge_check(
    judgments: Judgments | pd.DataFrame,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    variant: str | None = None,
    score: ScoreField = "score",
) -> dict[str, Any]:
    """The check of every judge (and the panel when there are several) on every dimension.

    Rows of candidate models (not ``control:``) are ignored. Raises UserError when the
    rows hold no ``control:gold`` judgment or no other control to compare it with.
    """
    absolute = judgments.absolute if isinstance(judgments, Judgments) else judgments
    rows, variant = select_variant(absolute, variant)
    models = rows["model"].astype(str)
    rows = rows[models.str.startswith(CONTROL_PREFIX)
                & models.str.removeprefix(CONTROL_PREFIX).isin(list(CONTROLS))]
    present = set(rows["model"].astype(str).unique())
    if GOLD not in present:
        raise UserError("no control:gold judgments: judge the controls first "
                        "(csc-harness check-judge, or run with --controls)")
    if len(present) < 2:
        raise UserError("only control:gold was judged: the check needs another control "
                        f"({', '.join(k for k in CONTROLS if k != 'gold')})")
    notes: list[str] = []
    items = item_scores(rows, score=score)
    items = add_panel(items, notes)
    pairs = _pairs(items)
    table = _bootstrap(pairs, rounds, seed, confidence)
    judges = {}
    for judge in sorted(str(j) for j in items["judge"].unique()):
        dims = sorted(str(d) for d in items.loc[items["judge"] == judge, "dimension"].unique())
        judges[judge] = _judge_entry(table, judge, dims, threshold)
    if PANEL in judges:  # the panel last, after the judges it averages
        judges[PANEL] = judges.pop(PANEL)
    return {"judges": judges, "settings": {
        "threshold": threshold, "rounds": rounds, "seed": seed, "confidence": confidence,
        "variant": variant, "score": score, "resample": "conversation_id", "chance": CHANCE,
        "controls": [k for k in CONTROLS if CONTROL_PREFIX + k in present],
        "notes": notes}}


def has_controls(rows: pd.DataFrame) -> bool:
    """True when ``rows`` hold ``control:gold`` and at least one other control: enough
    for :func:`judge_check`."""
    models = set(rows["model"].astype(str).unique())
    return GOLD in models and any(CONTROL_PREFIX + k in models for k in CONTROLS if k != "gold")


def run_check(rows: pd.DataFrame, **options: Any) -> dict[str, Any] | None:
    """:func:`judge_check` of rows that also hold candidate models (a run, a leaderboard),
    or None when they hold no control check (:func:`has_controls`).

    Adds ``coverage``: the items and dialogues ``control:gold`` was judged on against those
    of the candidate models (a run judges the controls on a seeded subset of dialogues),
    and ``findings``: one plain sentence per judge (:func:`findings`).
    """
    if not has_controls(rows):
        return None
    result = judge_check(rows, **options)
    models = rows["model"].astype(str)
    gold = rows[models == GOLD]
    others = rows[~models.str.startswith(CONTROL_PREFIX)]
    base = others if len(others) else gold
    result["coverage"] = {
        "n_items": int(gold["item_id"].nunique()),
        "n_dialogues": int(gold["conversation_id"].nunique()),
        "of_items": int(base["item_id"].nunique()),
        "of_dialogues": int(base["conversation_id"].nunique())}
    result["findings"] = findings(result)
    return result


def findings(result: dict[str, Any]) -> list[str]:
    """One sentence per judge: whether its scores can be trusted to rank replies, and on
    which dimensions they cannot (the verdicts hold the details)."""
    out = []
    for judge, entry in result["judges"].items():
        dims = entry["dimensions"]
        failed = [d for d, v in dims.items() if not v["pass"]]
        if not failed:
            out.append(f"{judge} passes the check: it scores the reference reply above the "
                       f"controls on every dimension ({', '.join(dims)}).")
        elif len(failed) == len(dims):
            out.append(f"{judge} FAILS the check on every dimension ({', '.join(failed)}): it "
                       "does not reliably score the reference reply above replies known to be "
                       "worse, so its scores and the ranking built on them are not evidence of "
                       "quality.")
        else:
            out.append(f"{judge} FAILS the check on {', '.join(failed)} (passes on "
                       f"{', '.join(d for d in dims if d not in failed)}): do not trust its "
                       f"scores on {', '.join(failed)}.")
    return out


def _pairs(items: pd.DataFrame) -> pd.DataFrame:
    """One row per (judge, dimension, kind, item) with both scores: gold's and the control's."""
    keys = ["judge", "dimension", "item_id"]
    frame = pd.DataFrame({k: items[k].astype(str) for k in keys + ["model", "conversation_id"]})
    frame["score"] = items["score"].to_numpy()
    is_gold = frame["model"] == GOLD
    gold = frame.loc[is_gold, keys + ["score"]]
    other = frame.loc[~is_gold]
    pairs = other.merge(gold, on=keys, suffixes=("", "_gold"))
    pairs["kind"] = pairs["model"].str.removeprefix(CONTROL_PREFIX)
    diff = pairs["score_gold"].to_numpy() - pairs["score"].to_numpy()
    pairs["win"] = 0.5 * (np.sign(diff) + 1.0)
    return pairs[["judge", "dimension", "kind", "item_id", "conversation_id", "win"]]


def _bootstrap(pairs: pd.DataFrame, rounds: int, seed: int,
               confidence: float) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``{(judge, dimension, kind or POOLED): {discrimination, ci_low, ci_high, n}}``."""
    lowers = {(k, d): expected_to_lower(k, d)
              for k, d in pairs[["kind", "dimension"]].drop_duplicates().itertuples(index=False)}
    mask = np.array([lowers[(k, d)] for k, d in zip(pairs["kind"], pairs["dimension"])],
                    dtype=bool)
    pooled = pairs[mask].assign(kind=POOLED)
    series = pd.concat([pairs, pooled], ignore_index=True)
    if not len(series):
        return {}
    grouped = series.groupby(["judge", "dimension", "kind"], sort=True)
    sid = grouped.ngroup().to_numpy()
    keys = list(grouped.groups)
    clusters, uniques = pd.factorize(series["conversation_id"], sort=True)
    shape = (len(uniques), len(keys))
    win = series["win"].to_numpy()
    sums = sparse.coo_matrix((win, (clusters, sid)), shape=shape).toarray()
    counts = sparse.coo_matrix((np.ones_like(win), (clusters, sid)), shape=shape).toarray()
    point, reps = cluster_means(sums, counts, rounds, np.random.default_rng(seed))
    low, high = percentile_interval(reps, confidence)
    n = counts.sum(axis=0)
    dialogues = (counts > 0).sum(axis=0)
    low, high = np.where(dialogues > 1, low, np.nan), np.where(dialogues > 1, high, np.nan)
    return {tuple(map(str, key)): {"discrimination": clean(point[i]), "ci_low": clean(low[i]),
                                   "ci_high": clean(high[i]), "n": int(n[i])}
            for i, key in enumerate(keys)}


def _judge_entry(table: dict, judge: str, dims: list[str], threshold: float) -> dict[str, Any]:
    dimensions = {}
    for dim in dims:
        controls = {kind: stats for (j, d, kind), stats in sorted(table.items())
                    if j == judge and d == dim and kind != POOLED}
        pooled = table.get((judge, dim, POOLED))
        dimensions[dim] = _dimension_entry(dim, pooled, controls, threshold)
    return {"pass": bool(dimensions) and all(d["pass"] for d in dimensions.values()),
            "dimensions": dimensions}


def _fmt(stats: dict[str, Any]) -> str:
    if stats["ci_low"] is None:  # one dialogue: resampling it changes nothing
        return f"{stats['discrimination']:.2f}, one dialogue: no interval"
    return f"{stats['discrimination']:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"


def _dimension_entry(dim: str, pooled: dict | None, controls: dict[str, dict],
                     threshold: float) -> dict[str, Any]:
    """Pass/fail of one dimension and the plain-words verdict saying why."""
    weak = [f"cannot tell {CONTROLS[k].contrast} from the right one on {dim} ({_fmt(s)})"
            for k, s in controls.items()
            if k != PADDED and expected_to_lower(k, dim) and not _above(s, threshold)]
    padded = controls.get(PADDED)
    prefers_padded = padded is not None and padded["ci_high"] is not None \
        and padded["ci_high"] < CHANCE
    if pooled is None:
        judged = ", ".join(controls) or "none"
        entry: dict[str, Any] = {
            "pass": False, "discrimination": None, "ci_low": None, "ci_high": None, "n": 0,
            "reason": f"no control expected to lower {dim} was judged (judged: {judged})"}
        reasons = [entry["reason"]]
    else:
        entry = {"pass": _above(pooled, threshold) and not prefers_padded, **pooled}
        reasons = []
        if pooled["ci_low"] is None:  # no interval, so no evidence either way
            reasons = [f"no verdict on {dim}: {_fmt(pooled)}; judge controls on more "
                       "dialogues"]
        elif not _above(pooled, threshold):
            reasons = weak or [f"does not separate the reference reply from the controls "
                               f"clearly enough on {dim} ({_fmt(pooled)}; the lower bound "
                               f"must be above {threshold:g})"]
    if prefers_padded:
        reasons.append(f"prefers {CONTROLS[PADDED].contrast} to the reference reply on {dim} "
                       f"({_fmt(padded)}; below {CHANCE:g} favours padding)")
    if entry["pass"]:
        verdict = (f"tells the reference reply from the controls on {dim}: "
                   f"{_fmt(pooled)}, lower bound above {threshold:g}")  # type: ignore[arg-type]
        if weak:
            verdict += "; but " + "; ".join(weak)
        if padded is None:
            verdict += "; verbosity not probed (no padded control)"
    else:
        verdict = "; ".join(reasons)
    entry["verdict"] = verdict
    entry["controls"] = controls
    return entry


def _above(stats: dict[str, Any], threshold: float) -> bool:
    return stats["ci_low"] is not None and stats["ci_low"] > threshold


# --------------------------------------------------------------------------- markdown


def controls_table() -> str:
    """The control table as markdown (the same rows the README shows)."""
    lines = ["| control | expected to lower | what it is |", "|---|---|---|"]
    for kind, spec in CONTROLS.items():
        lowers = "every dimension" if EVERY in spec.lowers else (
            ", ".join(spec.lowers) or ("none (must not raise any)" if kind == PADDED
                                       else "— (the reference)"))
        lines.append(f"| `control:{kind}` | {lowers} | {spec.description} |")
    return "\n".join(lines)


def coverage_text(coverage: dict[str, int]) -> str:
    """Which items the controls were judged on, in words."""
    c = coverage
    if c["n_items"] >= c["of_items"]:
        return (f"The controls were judged on every item ({c['n_items']} turns of "
                f"{c['n_dialogues']} dialogues).")
    return (f"The controls were judged on a seeded subset: {c['n_items']} of {c['of_items']} "
            f"turns, in {c['n_dialogues']} of {c['of_dialogues']} dialogues "
            "(intervals resample those dialogues).")


def _cell(stats: dict | None) -> str:
    if not stats or stats.get("discrimination") is None:
        return "—"
    return f"{_fmt(stats)} n={stats['n']}"


def judge_check_markdown(result: dict[str, Any]) -> str:
    """``judge_check.md``: per judge a table of discrimination and the verdicts in words."""
    s = result["settings"]
    kinds = [k for k in CONTROLS if k != "gold" and k in s["controls"]]
    out = ["# Can this judge be trusted?", "",
           "Discrimination is the share of items where the judge scores the reference reply "
           "(`control:gold`) strictly above a control reply, ties counting one half: 1 is "
           "perfect, 0.5 is chance, below 0.5 the judge prefers the control. A dimension "
           f"passes when the lower end of its {s['confidence']:.0%} interval (dialogue "
           f"bootstrap, {s['rounds']} rounds, seed {s['seed']}) is above {s['threshold']:g} "
           "and the padded control is not preferred to gold beyond chance "
           "(its interval not entirely below 0.5).", ""]
    out += [f"**{line}**" for line in result.get("findings", [])]
    if result.get("coverage"):
        out += ["", coverage_text(result["coverage"])]
    out += [""] if result.get("findings") or result.get("coverage") else []
    for judge, entry in result["judges"].items():
        out += [f"## {judge}: {'PASS' if entry['pass'] else 'FAIL'}", "",
                "| dimension | pass | discrimination | " + " | ".join(kinds) + " |",
                "|---|---|---|" + "---|" * len(kinds)]
        for dim, d in entry["dimensions"].items():
            cells = [_cell(d["controls"].get(k)) for k in kinds]
            out.append(f"| {dim} | {'yes' if d['pass'] else 'no'} | {_cell(d)} | "
                       + " | ".join(cells) + " |")
        out += [""] + [f"- {dim}: {d['verdict']}" for dim, d in entry["dimensions"].items()]
        out.append("")
    out += ["## The controls", "", controls_table(), ""]
    if s.get("notes"):
        out += ["Notes: " + "; ".join(s["notes"]), ""]
    return "\n".join(out)
