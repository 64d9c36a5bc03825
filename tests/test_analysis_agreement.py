"""Judge-human agreement: the correlation.json shape, values against scipy, undefined cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from csc_harness.analysis import (
    correlate,
    krippendorff_alpha,
    leave_one_out_spearman,
    load_judgments,
)
from csc_harness.analysis.synthetic import absolute_row, synthetic_rows, write_jsonl
from csc_harness.errors import UserError

STAT_KEYS = {"value", "ci_low", "ci_high", "p"}
DIM_KEYS = {"n", "spearman", "kendall", "pearson", "alpha_humans", "alpha_with_judge",
            "human_loo_spearman"}


def load(tmp_path, rows):
    write_jsonl(iter(rows), tmp_path / "j" / "judgments.jsonl")
    return load_judgments([tmp_path / "j"])


def ratings_from(judgments, raters=3, noise=0.8, seed=0, dims=("empathy",)):
    """Human ratings = the judge's score plus rater noise, rounded onto 1-5."""
    rng = np.random.default_rng(seed)
    rows = judgments.absolute
    ok = rows[(rows["status"] == "ok") & rows["dimension"].isin(dims)]
    base = ok.groupby(["item_id", "model", "dimension"], observed=True)["score"].mean()
    out = []
    for (item, model, dim), score in base.items():
        for k in range(raters):
            rated = float(np.clip(np.rint(score + rng.normal(0, noise)), 1, 5))
            out.append((item, model, dim, f"r{k}", rated))
    return pd.DataFrame(out, columns=["item_id", "model", "dimension", "rater", "score"])


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agree")
    rows = synthetic_rows(("m1", "m2", "m3", "m4"), dialogues=12, turns=4,
                          judges=("judge-a", "judge-b"), invalid_rate=0.0, seed=2)
    write_jsonl(rows, folder / "judgments.jsonl")
    return load_judgments([folder])


@pytest.fixture(scope="module")
def result(judged):
    return correlate(judged, ratings_from(judged), rounds=200, seed=0)


def test_result_has_the_documented_shape(result):
    assert set(result) == {"item", "system", "ratings"}
    for level in ("item", "system"):
        assert set(result[level]) == {"judge-a", "judge-b", "panel"}
        entry = result[level]["panel"]["empathy"]
        assert DIM_KEYS <= set(entry)
        for name in ("spearman", "kendall", "pearson"):
            assert STAT_KEYS <= set(entry[name])
    json.dumps(result, allow_nan=False)


def test_item_level_values_match_scipy_on_the_aligned_units(judged, result):
    human = ratings_from(judged)
    mean_h = human.groupby(["item_id", "model"], observed=True)["score"].mean()
    rows = judged.absolute
    judge = rows[(rows["judge"] == "judge-a") & (rows["dimension"] == "empathy")]
    judge = judge.set_index(["item_id", "model"])["score"]
    both = pd.concat([judge.rename("j"), mean_h.rename("h")], axis=1, join="inner")
    entry = result["item"]["judge-a"]["empathy"]
    assert entry["n"] == len(both) == 4 * 12 * 4
    assert entry["spearman"]["value"] == pytest.approx(sps.spearmanr(both.j, both.h)[0])
    assert entry["kendall"]["value"] == pytest.approx(sps.kendalltau(both.j, both.h)[0])
    assert entry["pearson"]["p"] == pytest.approx(sps.pearsonr(both.j, both.h)[1])
    for name in ("spearman", "kendall", "pearson"):
        assert entry[name]["ci_low"] <= entry[name]["value"] <= entry[name]["ci_high"]


def test_system_level_correlates_per_model_means(result):
    entry = result["system"]["judge-a"]["empathy"]
    assert entry["n"] == 4
    assert entry["spearman"]["value"] == pytest.approx(1.0)


def test_alpha_and_the_human_baseline_are_reported(judged, result):
    entry = result["item"]["judge-a"]["empathy"]
    assert 0 < entry["alpha_humans"] < 1
    assert 0 < entry["alpha_with_judge"] < 1
    assert 0 < entry["human_loo_spearman"] < 1


def test_a_judge_that_is_the_human_mean_agrees_perfectly(tmp_path):
    rows, ratings = [], []
    for i in range(6):
        score = float(1 + i % 5)
        rows.append(absolute_row(item_id=f"d{i}:1", conversation_id=f"d{i}", score=score))
        ratings += [(f"d{i}:1", "model-a", "empathy", r, score) for r in ("r1", "r2")]
    human = pd.DataFrame(ratings, columns=["item_id", "model", "dimension", "rater", "score"])
    entry = correlate(load(tmp_path, rows), human, rounds=100)["item"]["judge-x"]["empathy"]
    assert entry["spearman"]["value"] == pytest.approx(1.0)
    assert entry["alpha_humans"] == pytest.approx(1.0)
    assert entry["alpha_with_judge"] == pytest.approx(1.0)
    assert entry["human_loo_spearman"] == pytest.approx(1.0)


def test_constant_judge_scores_are_null_with_a_reason_not_zero(tmp_path):
    rows = [absolute_row(item_id=f"d{i}:1", conversation_id=f"d{i}", score=4.0)
            for i in range(6)]
    human = pd.DataFrame([(f"d{i}:1", "model-a", "empathy", "r1", float(1 + i % 5))
                          for i in range(6)],
                         columns=["item_id", "model", "dimension", "rater", "score"])
    entry = correlate(load(tmp_path, rows), human, rounds=50)["item"]["judge-x"]["empathy"]
    assert entry["spearman"]["value"] is None
    assert "judge scores are constant" in entry["spearman"]["value_reason"]
    assert entry["alpha_humans"] is None
    assert entry["alpha_humans_reason"] == "fewer than 2 raters"
    assert entry["human_loo_spearman"] is None
    system = correlate(load(tmp_path, rows), human, rounds=50)["system"]["judge-x"]["empathy"]
    assert system["n"] == 1 and "fewer than 3" in system["spearman"]["value_reason"]


def test_an_unrequested_level_is_null_with_a_reason(judged):
    out = correlate(judged, ratings_from(judged), levels=("item",), rounds=20)
    assert out["system"] is None and "not requested" in out["system_reason"]


def test_ratings_that_match_nothing_are_a_user_error(judged):
    human = pd.DataFrame([("x:1", "nobody", "empathy", "r1", 3.0)],
                         columns=["item_id", "model", "dimension", "rater", "score"])
    with pytest.raises(UserError, match="no human rating matches"):
        correlate(judged, human, rounds=10)


def test_adding_a_judge_changes_no_other_judges_result(tmp_path, judged, result):
    rows = judged.absolute
    only_a = rows[rows["judge"] == "judge-a"]
    alone = correlate(only_a, ratings_from(judged), rounds=200, seed=0)
    assert alone["item"]["judge-a"] == result["item"]["judge-a"]


def test_leave_one_out_hand_case():
    raters = np.array([[1, 2, 3, 4.0], [1, 2, 3, 4.0], [4, 3, 2, 1.0]])
    # r0 vs mean(r1, r2) = [2.5]*4 is constant: undefined; r1 likewise; r2 vs [1,2,3,4]: -1.
    assert leave_one_out_spearman(raters) == pytest.approx(-1.0)


def test_alpha_with_judge_matches_alpha_on_the_stacked_matrix():
    humans = np.array([[1, 2, 3, 4, 5.0], [2, 2, 3, 5, 5.0]])
    judge = np.array([1, 3, 3, 4, 4.0])
    assert krippendorff_alpha(np.vstack([humans, judge])) < krippendorff_alpha(humans) + 1
