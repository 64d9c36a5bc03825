"""Bias diagnostics: length preference, flat judges, position consistency, model families."""

from __future__ import annotations

import pytest

from csc_harness.analysis import leaderboard, load_judgments, model_family, same_family
from csc_harness.analysis.synthetic import absolute_row, pairwise_row, write_jsonl


def board_for(tmp_path, rows):
    write_jsonl(iter(rows), tmp_path / "judgments.jsonl")
    return leaderboard(load_judgments([tmp_path]), rounds=20)


@pytest.mark.parametrize(("name", "family"), [
    pytest.param("gpt-4o", "openai", id="gpt"),
    pytest.param("openai/gpt-4o-mini", "openai", id="openai-gpt"),
    pytest.param("o3-mini", "openai", id="o-series"),
    pytest.param("anthropic/claude-3-5-sonnet", "anthropic", id="claude"),
    pytest.param("hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "qwen", id="qwen-vllm"),
    pytest.param("ollama/llama3.1:8b", "llama", id="llama"),
    pytest.param("openai/smollm2-135m-instruct", "smollm", id="smollm-local"),
    pytest.param("deepseek/deepseek-chat", "deepseek", id="deepseek"),
    pytest.param("gemini/gemini-1.5-pro", "google", id="gemini"),
    pytest.param("openai/my-finetune", None, id="openai-prefix-alone-says-nothing"),
    pytest.param("proto3-model", None, id="no-false-o3"),
])
def test_model_family(name, family):
    assert model_family(name) == family


def test_same_family_needs_both_sides_known():
    assert same_family("openai/gpt-4o", "gpt-4o-mini") == "openai"
    assert same_family("claude-3-haiku", "gpt-4o") is None
    assert same_family("my-judge", "my-model") is None


def test_a_judge_that_rewards_length_shows_a_positive_length_correlation(tmp_path):
    rows = [absolute_row(item_id=f"d{i}:1", conversation_id=f"d{i}", reply="好" * (10 * i + 1),
                         score=float(1 + i // 4)) for i in range(20)]
    [length] = board_for(tmp_path, rows)["bias"]["length"]
    assert length["n"] == 20 and length["spearman"] > 0.9 and length["p"] < 0.01


def test_constant_scores_leave_the_length_correlation_undefined(tmp_path):
    rows = [absolute_row(item_id=f"d{i}:1", reply="好" * i) for i in range(1, 6)]
    [length] = board_for(tmp_path, rows)["bias"]["length"]
    assert length["spearman"] is None and "constant" in length["spearman_reason"]


def test_a_judge_giving_nearly_everything_a_4_is_flagged_flat(tmp_path):
    rows = [absolute_row(item_id=f"d{i}:1", score=4.0 if i < 9 else 2.0) for i in range(10)]
    [dist] = board_for(tmp_path, rows)["bias"]["distribution"]
    assert dist["counts"] == {"1": 0, "2": 1, "3": 0, "4": 9, "5": 0}
    assert (dist["top_score"], dist["top_share"], dist["flat"]) == (4, 0.9, True)


def test_position_consistency_counts_verdicts_that_survive_the_swap(tmp_path):
    rows = [absolute_row()]
    # item 1: model-a wins in both orders (consistent); item 2: the first shown always wins.
    rows += [pairwise_row(item_id="d1:1", order="ab", winner="a"),
             pairwise_row(item_id="d1:1", order="ba", winner="a"),
             pairwise_row(item_id="d1:2", order="ab", winner="a"),
             pairwise_row(item_id="d1:2", order="ba", winner="b"),
             pairwise_row(item_id="d1:3", order="ab", winner="tie")]
    [pos] = board_for(tmp_path, rows)["bias"]["position"]
    assert pos["n_pairs"] == 2
    assert pos["consistency"] == 0.5
    assert pos["first_position_rate"] == 0.75  # 3 of 4 decided verdicts went to the first
    assert pos["tie_rate"] == 0.2


def test_no_pairwise_rows_means_no_position_entries(tmp_path):
    assert board_for(tmp_path, [absolute_row()])["bias"]["position"] == []
