"""Automatic conversation metrics from transcript rows: no judge needed.

Per conversation (values in 0..1 unless said otherwise, None where a rule does not apply):

- ``turns``: utterances until the end (a count);
- ``closed_by_supporter`` / ``ended_by_customer`` / ``hit_cap`` / ``customer_failed``: the
  end reason as one-hot shares;
- the RoleCS flow rules: ``opens_with_greeting`` (first agent turn is Greeting),
  ``verification_after_greeting`` (the first Identity Verification is the agent turn right
  after the greeting; None when the agent never verifies), ``ends_with_closure`` (last
  agent turn is Appreciation and Closure), ``no_triple_repeat`` (no strategy three times in
  a row), ``flow_all`` (every applicable rule holds);
- ``invalid_label_share``: agent turns without a valid strategy label.

Each model's value is the mean over its conversations with a dialogue-bootstrap interval:
the resampled unit is the scenario (all samples and models of a scenario move together, so
models' intervals come from the same resamples), with one seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

import numpy as np

__all__ = ["METRICS", "conversation_metrics", "metric_table"]

METRICS: tuple[str, ...] = (
    "turns", "closed_by_supporter", "ended_by_customer", "hit_cap", "customer_failed",
    "opens_with_greeting", "verification_after_greeting", "ends_with_closure",
    "no_triple_repeat", "flow_all", "invalid_label_share",
)
_END = {"supporter_closed": "closed_by_supporter", "customer_ended": "ended_by_customer",
        "max_turns": "hit_cap", "customer_failed": "customer_failed"}


def conversation_metrics(row: dict[str, Any]) -> dict[str, float | None]:
    """The metrics of one transcript row (see the module docstring)."""
    codes = [t.get("strategy") for t in row["turns"] if t["speaker"] == "supporter"]
    out: dict[str, float | None] = {"turns": float(len(row["turns"]))}
    for reason, name in _END.items():
        out[name] = float(row["end_reason"] == reason)
    out["opens_with_greeting"] = float(bool(codes) and codes[0] == "GT")
    if "IV" in codes:
        first = codes.index("IV")
        out["verification_after_greeting"] = float(first > 0 and codes[first - 1] == "GT")
    else:
        out["verification_after_greeting"] = None
    out["ends_with_closure"] = float(bool(codes) and codes[-1] == "AC")
    longest = max((len(list(run)) for code, run in groupby(codes) if code), default=0)
    out["no_triple_repeat"] = float(longest <= 2)
    rules = [out[k] for k in ("opens_with_greeting", "verification_after_greeting",
                              "ends_with_closure", "no_triple_repeat") if out[k] is not None]
    out["flow_all"] = float(all(rules))
    out["invalid_label_share"] = (sum(c is None for c in codes) / len(codes)) if codes else None
    return out


def metric_table(rows: Sequence[dict[str, Any]], *, rounds: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """``{model: {"n_conversations", "end_reasons", metric: {mean, ci_low, ci_high, n}}}``.

    Intervals are percentile intervals over ``rounds`` resamples of scenarios; with one
    scenario there is no interval (``ci_reason``).
    """
    from ..analysis.stats import cluster_means, percentile_interval

    scenarios = sorted({r["scenario_id"] for r in rows})
    models = sorted({r["model"] for r in rows})
    where = {s: i for i, s in enumerate(scenarios)}
    series = [(m, k) for m in models for k in METRICS]
    column = {key: j for j, key in enumerate(series)}
    sums = np.zeros((len(scenarios), len(series)))
    counts = np.zeros_like(sums)
    for row in rows:
        for name, value in conversation_metrics(row).items():
            if value is not None:
                j = column[(row["model"], name)]
                sums[where[row["scenario_id"]], j] += value
                counts[where[row["scenario_id"]], j] += 1
    rng = np.random.default_rng(seed)
    means, reps = cluster_means(sums, counts, rounds, rng)
    low, high = percentile_interval(reps, confidence)
    table: dict[str, dict[str, Any]] = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        entry: dict[str, Any] = {
            "n_conversations": len(mine),
            "end_reasons": {reason: sum(r["end_reason"] == reason for r in mine)
                            for reason in _END},
            "invalid_labels": sum(r.get("invalid_labels", 0) for r in mine)}
        for name in METRICS:
            j = column[(model, name)]
            n = int(counts[:, j].sum())
            one = len(scenarios) < 2
            entry[name] = {
                "mean": None if n == 0 else round(float(means[j]), 4),
                "ci_low": None if one or n == 0 else round(float(low[j]), 4),
                "ci_high": None if one or n == 0 else round(float(high[j]), 4),
                "n": n, **({"ci_reason": "one scenario: no interval"} if one else {})}
        table[model] = entry
    return table
