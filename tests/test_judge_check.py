"""The judge check as analysis: discrimination, ties, pooling, intervals, verdicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from csc_harness.analysis import load_judgments
from csc_harness.analysis.judge_check import (
    controls_table,
    judge_check,
    judge_check_markdown,
)
from csc_harness.analysis.stats import cluster_means, percentile_interval
from csc_harness.errors import UserError

DIMS = ("empathy", "problem_resolution", "strategy_adherence")
KINDS = ("gold", "mismatch", "truncated", "generic", "wrong-label", "padded")
Scorer = Callable[[str, str, int], float]


def write_rows(tmp_path: Path, scorer: Scorer, *, dialogues: int = 10, turns: int = 4,
               kinds=KINDS, judges=("judge-x",), dims=DIMS, extra_models=()) -> Path:
    """Judgments of every kind on dialogues x turns items; ``scorer(model, dim, i)``."""
    rows = []
    for d in range(dialogues):
        for t in range(turns):
            i = d * turns + t
            for model in [f"control:{k}" for k in kinds] + list(extra_models):
                for judge in judges:
                    for dim in dims:
                        rows.append({"item_id": f"c{d}:{t}", "conversation_id": f"c{d}",
                                     "model": model, "judge": judge, "dimension": dim,
                                     "status": "ok", "score": scorer(model, dim, i),
                                     "scale_min": 1, "scale_max": 5})
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return tmp_path


def check(tmp_path: Path, scorer: Scorer, **kwargs):
    options = {k: kwargs.pop(k) for k in ("threshold", "rounds", "seed") if k in kwargs}
    return judge_check(load_judgments([write_rows(tmp_path, scorer, **kwargs)]),
                       rounds=options.pop("rounds", 200), **options)


def good(model: str, dim: str, i: int) -> float:
    return 5.0 if model == "control:gold" else 1.0


def test_a_judge_that_scores_only_gold_high_passes_every_dimension(tmp_path):
    result = check(tmp_path, good)
    entry = result["judges"]["judge-x"]
    assert entry["pass"] is True
    for dim in DIMS:
        d = entry["dimensions"][dim]
        assert (d["pass"], d["discrimination"], d["ci_low"], d["ci_high"]) == (True, 1.0, 1.0, 1.0)
        assert d["verdict"].startswith(f"tells the reference reply from the controls on {dim}")
    dims = entry["dimensions"]
    # pooled over the controls expected to lower the dimension: 40 items each
    assert (dims["empathy"]["n"], dims["problem_resolution"]["n"],
            dims["strategy_adherence"]["n"]) == (40, 120, 160)
    assert set(dims["empathy"]["controls"]) == set(KINDS) - {"gold"}
    assert dims["empathy"]["controls"]["padded"] == {
        "discrimination": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 40}


def test_a_constant_judge_comes_out_at_one_half_and_fails_in_plain_words(tmp_path):
    entry = check(tmp_path, lambda m, d, i: 3.0)["judges"]["judge-x"]
    assert entry["pass"] is False
    for dim in DIMS:
        d = entry["dimensions"][dim]
        assert (d["pass"], d["discrimination"], d["ci_low"], d["ci_high"]) == (False, .5, .5, .5)
        assert all(c["discrimination"] == 0.5 for c in d["controls"].values())
    assert entry["dimensions"]["empathy"]["verdict"] == (
        "cannot tell a reply from another conversation from the right one on empathy "
        "(0.50 [0.50, 0.50])")
    assert "cannot tell a wrong strategy label from the right one on strategy_adherence" \
        in entry["dimensions"]["strategy_adherence"]["verdict"]


def test_ties_count_one_half(tmp_path):
    # gold 3 against mismatch 2 (win), 3 (tie), 4 (loss), 1 (win) in turn: (1 + .5 + 0 + 1) / 4
    def scorer(model, dim, i):
        return 3.0 if model == "control:gold" else float((2, 3, 4, 1)[i % 4])

    d = check(tmp_path, scorer, kinds=("gold", "mismatch"))["judges"]["judge-x"]
    assert d["dimensions"]["empathy"]["discrimination"] == pytest.approx(0.625)
    assert d["dimensions"]["empathy"]["n"] == 40


def test_the_interval_is_the_leaderboard_bootstrap_over_dialogues(tmp_path):
    def scorer(model, dim, i):
        return 4.0 if model == "control:gold" else float(1 + (i * 7) % 5)

    result = check(tmp_path, scorer, kinds=("gold", "mismatch"), rounds=300, seed=5)
    d = result["judges"]["judge-x"]["dimensions"]["empathy"]
    gold = 4.0
    wins = np.array([[0.5 * (np.sign(gold - (1 + ((dd * 4 + t) * 7) % 5)) + 1)
                      for t in range(4)] for dd in range(10)])
    sums, counts = wins.sum(axis=1)[:, None], np.full((10, 1), 4.0)
    point, reps = cluster_means(sums, counts, 300, np.random.default_rng(5))
    low, high = percentile_interval(reps, 0.95)
    assert (d["discrimination"], d["ci_low"], d["ci_high"]) == pytest.approx(
        (point[0], low[0], high[0]))
    assert result["settings"]["resample"] == "conversation_id"


def test_a_judge_that_loves_verbosity_fails_the_padded_rule(tmp_path):
    def scorer(model, dim, i):
        return {"control:padded": 5.0, "control:gold": 4.0}.get(model, 1.0)

    entry = check(tmp_path, scorer)["judges"]["judge-x"]
    assert entry["pass"] is False
    for dim in DIMS:
        d = entry["dimensions"][dim]
        assert d["discrimination"] == 1.0 and d["pass"] is False
        assert d["controls"]["padded"]["discrimination"] == 0.0
        assert d["verdict"] == (f"prefers a reply padded with empty politeness to the reference "
                                f"reply on {dim} (0.00 [0.00, 0.00]; below 0.5 favours padding)")


def test_padded_scored_like_gold_is_not_a_preference(tmp_path):
    def scorer(model, dim, i):
        return 5.0 if model in ("control:gold", "control:padded") else 1.0

    entry = check(tmp_path, scorer)["judges"]["judge-x"]
    assert entry["pass"] is True
    assert entry["dimensions"]["empathy"]["controls"]["padded"]["discrimination"] == 0.5


def test_a_weak_control_inside_a_passing_dimension_is_named(tmp_path):
    def scorer(model, dim, i):
        return 5.0 if model in ("control:gold", "control:wrong-label") else 1.0

    d = check(tmp_path, scorer)["judges"]["judge-x"]["dimensions"]["strategy_adherence"]
    assert d["pass"] is True and d["discrimination"] == pytest.approx(0.875)
    assert d["verdict"].endswith("; but cannot tell a wrong strategy label from the right one "
                                 "on strategy_adherence (0.50 [0.50, 0.50])")


def test_a_dimension_no_judged_control_should_lower_fails_with_a_reason(tmp_path):
    entry = check(tmp_path, good, kinds=("gold", "wrong-label", "padded"))["judges"]["judge-x"]
    emp = entry["dimensions"]["empathy"]
    assert emp["pass"] is False and emp["discrimination"] is None and emp["n"] == 0
    assert emp["verdict"] == ("no control expected to lower empathy was judged "
                              "(judged: padded, wrong-label)")
    assert entry["dimensions"]["strategy_adherence"]["pass"] is True


def test_several_judges_get_a_panel_and_model_rows_are_ignored(tmp_path):
    result = check(tmp_path, good, judges=("judge-a", "judge-b"), extra_models=("model-z",))
    assert list(result["judges"]) == ["judge-a", "judge-b", "panel"]
    assert all(j["pass"] for j in result["judges"].values())
    assert "model-z" not in json.dumps(result)


@pytest.mark.parametrize("kinds, message", [
    pytest.param(("mismatch", "padded"), "no control:gold judgments", id="no-gold"),
    pytest.param(("gold",), "only control:gold was judged", id="gold-only"),
])
def test_missing_controls_are_a_user_error(tmp_path, kinds, message):
    with pytest.raises(UserError, match=message):
        check(tmp_path, good, kinds=kinds)


def test_markdown_shows_the_table_verdicts_and_the_control_table(tmp_path):
    text = judge_check_markdown(check(tmp_path, lambda m, d, i: 3.0))
    assert text.startswith("# Can this judge be trusted?")
    assert "## judge-x: FAIL" in text
    assert "| empathy | no | 0.50 [0.50, 0.50] n=40 |" in text
    assert "- empathy: cannot tell a reply from another conversation" in text
    assert controls_table() in text
    assert "| `control:wrong-label` | strategy_adherence |" in controls_table()
