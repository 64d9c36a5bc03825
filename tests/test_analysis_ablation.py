"""Ablation analysis: variants compared with the baseline on the same items."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from csc_harness.analysis import compare_variants, load_judgments
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.errors import UserError


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """Baseline tracks the humans; 'noisy' scores at random; 'costly' is a relabelled copy."""
    folder = tmp_path_factory.mktemp("abl")
    base = list(synthetic_rows(("m1", "m2", "m3"), dialogues=15, turns=4,
                               dimensions=("empathy",), invalid_rate=0.0, seed=4))
    rng = np.random.default_rng(9)
    noisy = [dict(r, variant="noisy", score=float(rng.integers(1, 6)), cost_usd=None)
             for r in base]
    costly = [dict(r, variant="costly", prompt_tokens=800, cost_usd=0.01) for r in base]
    write_jsonl(iter(base + noisy + costly), folder / "judgments.jsonl")
    judgments = load_judgments([folder])
    human = pd.DataFrame([(r["item_id"], r["model"], "empathy", f"r{k}",
                           float(np.clip(r["score"] + rng.integers(-1, 2), 1, 5)))
                          for r in base for k in range(2)],
                         columns=["item_id", "model", "dimension", "rater", "score"])
    return judgments, human


@pytest.fixture(scope="module")
def result(variants):
    judgments, human = variants
    return compare_variants(judgments, human, rounds=200)


def test_baseline_comes_first_and_every_variant_has_an_entry(result):
    assert [v["variant"] for v in result["variants"]] == ["default", "costly", "noisy"]
    json.dumps(result, allow_nan=False)


def test_baseline_agrees_with_itself_and_a_copy_agrees_perfectly(result):
    by = {v["variant"]: v for v in result["variants"]}
    assert by["default"]["leaderboard"]["spearman"] == pytest.approx(1.0)
    assert by["costly"]["leaderboard"]["kendall"] == pytest.approx(1.0)
    assert by["costly"]["human"]["empathy"]["vs_baseline"]["diff"] == pytest.approx(0.0)


def test_a_noisy_variant_correlates_worse_with_humans_and_the_test_says_so(result):
    by = {v["variant"]: v for v in result["variants"]}
    base = by["default"]["human"]["empathy"]
    noisy = by["noisy"]["human"]["empathy"]
    assert base["spearman"]["value"] > 0.5
    assert noisy["spearman"]["value"] < base["spearman"]["value"]
    diff = noisy["vs_baseline"]
    assert diff["diff"] < 0 and diff["ci_high"] < 0 and diff["p"] < 0.05
    assert base["vs_baseline"] is None and base["vs_baseline_reason"] == "this is the baseline"


def test_tokens_and_cost_are_summed_and_unknown_cost_is_not_zero(result):
    by = {v["variant"]: v for v in result["variants"]}
    n = by["costly"]["n_rows"]
    assert by["costly"]["prompt_tokens"] == 800 * n
    assert by["costly"]["cost_usd"] == pytest.approx(0.01 * n)
    assert by["noisy"]["cost_usd"] is None and by["noisy"]["cost_unknown_rows"] == n


def test_without_human_ratings_there_is_no_human_section(variants):
    out = compare_variants(variants[0], rounds=10)
    assert all("human" not in v for v in out["variants"])


def test_an_unknown_baseline_is_a_user_error(variants):
    with pytest.raises(UserError, match="variants present: costly, default, noisy"):
        compare_variants(variants[0], baseline="v0", rounds=10)
