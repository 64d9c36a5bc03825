"""The leaderboard on synthetic judgment rows whose answers are known."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from csc_harness.analysis import EMBEDDED_LABEL, leaderboard, load_judgments
from csc_harness.analysis.synthetic import absolute_row, pairwise_row, synthetic_rows, write_jsonl
from csc_harness.errors import UserError


def load(tmp_path, rows, name="j"):
    write_jsonl(iter(rows), tmp_path / name / "judgments.jsonl")
    return load_judgments([tmp_path / name])


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lb")
    rows = synthetic_rows(("good", "middle", "weak"), dialogues=30, turns=6,
                          quality=(4.3, 3.4, 2.4), seed=1)
    write_jsonl(rows, folder / "judgments.jsonl")
    return load_judgments([folder])


@pytest.fixture(scope="module")
def board(three_models):
    return leaderboard(three_models, rounds=300, seed=0)


def test_models_are_ranked_by_their_true_quality(board):
    assert [m["model"] for m in board["models"]] == ["good", "middle", "weak"]
    assert [m["rank"] for m in board["models"]] == [1, 2, 3]


def test_every_interval_contains_its_mean(board):
    for m in board["models"]:
        for dims in m["scores"].values():
            for entry in dims.values():
                assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"]


def test_counts_and_rates_come_from_the_rows(three_models, board):
    rows = three_models.absolute
    good = rows[rows["model"] == "good"]
    status = board["models"][0]["status"]
    assert status["n_rows"] == len(good) == 30 * 6 * 3
    assert status["invalid_rate"] == pytest.approx((good["status"] == "invalid").mean())
    empathy = board["models"][0]["scores"]["judge-x"]["empathy"]
    ok = good[(good["dimension"] == "empathy") & (good["status"] == "ok")]
    assert empathy["n_items"] == len(ok)
    assert empathy["mean"] == pytest.approx(ok["score"].mean())
    assert empathy["n_dialogues"] == 30


def test_adjacent_models_are_compared_on_shared_items(board):
    pairs = {(c["higher"], c["lower"]) for c in board["comparisons"]}
    assert pairs == {("good", "middle"), ("middle", "weak")}
    overall = [c for c in board["comparisons"] if c["dimension"] == "overall"]
    assert all(c["significant"] and c["diff"] > 0 and c["p"] < 0.05 for c in overall)


def test_identical_models_are_not_significantly_different(tmp_path):
    rows = list(synthetic_rows(("a",), dialogues=15, turns=4, seed=3))
    twin = [dict(r, model="b") for r in rows]
    board = leaderboard(load(tmp_path, rows + twin), rounds=200)
    for c in board["comparisons"]:
        assert c["diff"] == 0 and not c["significant"] and c["p"] == 1.0


def test_breakdowns_cover_every_stage_in_stage_order(board):
    stage = board["breakdowns"]["judge-x"]["stage"]
    assert stage["groups"] == ["Connecting", "Identifying", "Exploring", "Resolving",
                               "Maintaining"]
    assert {r["model"] for r in stage["rows"]} == {"good", "middle", "weak"}
    assert set(board["breakdowns"]["judge-x"]) == {"stage", "strategy", "topic", "language"}


def test_the_same_seed_reproduces_the_board_and_another_seed_does_not(three_models, board):
    again = leaderboard(three_models, rounds=300, seed=0)
    other = leaderboard(three_models, rounds=300, seed=1)
    assert json.dumps(again) == json.dumps(board)
    assert json.dumps(other) != json.dumps(board)


def test_intervals_resample_dialogues_not_turns(tmp_path):
    # Every turn of a dialogue gets the dialogue's score: 8 independent values, not 320.
    rng = np.random.default_rng(0)
    rows = []
    for d in range(8):
        score = float(rng.integers(1, 6))
        rows += [absolute_row(item_id=f"d{d}:{t}", conversation_id=f"d{d}", score=score)
                 for t in range(40)]
    entry = leaderboard(load(tmp_path, rows), rounds=500)["models"][0]["scores"]["judge-x"]
    scores = np.array([r["score"] for r in rows])
    naive_se = scores.std() / np.sqrt(len(scores))
    cluster_se = scores.std() / np.sqrt(8)
    width = entry["empathy"]["ci_high"] - entry["empathy"]["ci_low"]
    assert width > 2 * 1.96 * naive_se * 2
    assert width == pytest.approx(2 * 1.96 * cluster_se, rel=0.35)


def test_item_score_is_the_mean_of_ok_samples(tmp_path):
    rows = [absolute_row(sample=0, score=3.0), absolute_row(sample=1, score=5.0),
            absolute_row(sample=2, score=None, status="invalid")]
    entry = leaderboard(load(tmp_path, rows), rounds=50)["models"][0]
    assert entry["scores"]["judge-x"]["empathy"]["mean"] == 4.0
    assert entry["scores"]["judge-x"]["empathy"]["n_items"] == 1
    assert entry["status"]["invalid_rate"] == pytest.approx(1 / 3)


def test_several_judges_add_a_panel_that_averages_them(tmp_path):
    rows = [absolute_row(judge="gpt-4o", score=2.0), absolute_row(judge="claude-3", score=4.0),
            absolute_row(judge="gpt-4o", item_id="d2:1", conversation_id="d2", score=4.0),
            absolute_row(judge="claude-3", item_id="d2:1", conversation_id="d2", score=4.0)]
    board = leaderboard(load(tmp_path, rows), rounds=50)
    assert board["settings"]["judges"] == ["claude-3", "gpt-4o", "panel"]
    assert board["settings"]["primary_judge"] == "panel"
    assert board["models"][0]["scores"]["panel"]["empathy"]["mean"] == 3.5


def test_automatic_metrics_join_their_model_and_unjudged_models_get_a_row(tmp_path):
    rows = [absolute_row(model="org/m")]
    metrics = [{"model": "org/m", "setting": "reference", "metrics": {"bleu2": 8.1},
                "source": "r.json"},
               {"model": "other", "setting": "generated", "metrics": {"bleu2": 1.0},
                "source": "m.json"}]
    models = leaderboard(load(tmp_path, rows), metrics, rounds=50)["models"]
    assert models[0]["model"] == "org/m"
    assert models[0]["metrics"]["reference"]["bleu2"] == 8.1
    assert (models[1]["model"], models[1]["rank"]) == ("other", None)


def test_embedded_model_results_are_labelled(tmp_path):
    board = leaderboard(load(tmp_path, [absolute_row(model="smollm2", embedded=True)]),
                        rounds=50)
    assert board["models"][0]["embedded"]
    assert EMBEDDED_LABEL in board["notes"][0]


def test_several_variants_need_a_choice(tmp_path):
    judgments = load(tmp_path, [absolute_row(variant="v1"), absolute_row(variant="v2")])
    with pytest.raises(UserError, match="--variant"):
        leaderboard(judgments, rounds=10)
    assert leaderboard(judgments, rounds=10, variant="v2")["settings"]["variant"] == "v2"
    with pytest.raises(UserError, match="variants present: v1, v2"):
        leaderboard(judgments, rounds=10, variant="v3")


def test_one_judge_with_two_scales_for_a_dimension_is_refused(tmp_path):
    rows = [absolute_row(), absolute_row(item_id="d1:3", scale_max=10, score=8.0)]
    with pytest.raises(UserError, match="more than one scale"):
        leaderboard(load(tmp_path, rows), rounds=10)


def test_same_family_judge_is_flagged_on_the_model(tmp_path):
    rows = [absolute_row(judge="openai/gpt-4o", model="gpt-4o-mini"),
            absolute_row(judge="openai/gpt-4o", model="qwen2.5-7b")]
    models = {m["model"]: m for m in leaderboard(load(tmp_path, rows), rounds=10)["models"]}
    assert models["gpt-4o-mini"]["same_family_judges"] == ["openai/gpt-4o"]
    assert models["qwen2.5-7b"]["same_family_judges"] == []


def test_board_is_json_serialisable_without_nan(board):
    json.dumps(board, allow_nan=False)


@pytest.mark.parametrize(("rows", "message"), [
    pytest.param([absolute_row(status="invalid", score=None)], "no usable 'score' in 1 "
                 "judgment rows (invalid 1)", id="all-invalid"),
])
def test_nothing_to_score_is_a_user_error_that_says_why(tmp_path, rows, message):
    with pytest.raises(UserError, match=re.escape(message)):
        leaderboard(load(tmp_path, rows), rounds=10)


def test_weighted_scores_can_be_ranked_instead(tmp_path):
    rows = [absolute_row(score=4.0, weighted_score=3.2)]
    board = leaderboard(load(tmp_path, rows), rounds=10, score="weighted_score")
    assert board["models"][0]["scores"]["judge-x"]["empathy"]["mean"] == 3.2


def _pair(item, a, b, order, winner):
    return pairwise_row(item_id=item, conversation_id=item.split(":")[0], model_a=a,
                        model_b=b, model=f"{a} vs {b}", order=order, winner=winner)


def test_pairwise_rows_alone_make_a_board_with_win_rates(tmp_path):
    rows = [_pair(f"d{i}:1", "base", "x", o, "b") for i in range(4) for o in ("ab", "ba")]
    board = leaderboard(load(tmp_path, rows), rounds=50)
    assert [m["model"] for m in board["models"]] == ["base", "x"]
    assert all(m["rank"] is None for m in board["models"])
    (rates,) = board["pairwise"]["win_rates"]
    assert rates["model"] == "x" and rates["win"]["value"] == 1.0
    assert board["bias"]["position"][0]["consistency"] == 1.0
    json.dumps(board, allow_nan=False)


def test_scores_and_pairwise_share_one_board_with_a_chosen_baseline(tmp_path):
    rows = list(synthetic_rows(("a", "b", "c"), dialogues=4, turns=2, seed=2))
    rows += [_pair(f"conv0000{d}:1", m, "c", o, "a") for d in range(4)
             for m in ("a", "b") for o in ("ab", "ba")]
    board = leaderboard(load(tmp_path, rows), rounds=50, baseline="c")
    assert board["models"][0]["rank"] == 1
    assert board["pairwise"]["baseline"] == "c"
    assert {r["model"]: r["win"]["value"] for r in board["pairwise"]["win_rates"]} == {
        "a": 1.0, "b": 1.0}


def test_a_baseline_without_pairwise_rows_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="needs pairwise judgments"):
        leaderboard(load(tmp_path, [absolute_row()]), rounds=10, baseline="model-a")
