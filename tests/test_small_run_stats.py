"""Significance that holds on small runs (issue 10, section 5 and the single-dialogue item).

A judge that scores at random cannot tell two models apart, so comparisons between them
may be marked significant at no more than the nominal 5%, whatever the number of
dialogues; a bootstrap over 3 dialogues marked them at p = 0.002. Rates are checked over
400 random-judge runs per size at once (one series per run), with the rule the
leaderboard applies (``p <= 1 - confidence``), and end to end on loaded judgment rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from csc_harness.analysis import leaderboard, load_judgments
from csc_harness.analysis.signflip import min_dialogues, sign_flip_test, swap_test
from csc_harness.analysis.stats import bootstrap_p, cluster_means, estimate
from csc_harness.analysis.synthetic import absolute_row, write_jsonl
from csc_harness.report import breakdowns_csv, leaderboard_csv, leaderboard_markdown, report_html

RUNS = 400
ALPHA = 0.05
ALLOWED = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)  # nominal rate + binomial noise


def random_judge(n_dialogues: int, seed: int, shift: float = 0.0, runs: int = RUNS):
    """Per-dialogue totals and counts of paired score differences, one column per run.

    Each dialogue has 1-8 judged turns; both models get scores drawn uniformly from 1-5,
    the first one raised by a point (capped at 5) with probability ``shift``."""
    rng = np.random.default_rng(seed)
    turns = rng.integers(1, 9, size=(n_dialogues, runs))
    sums = np.zeros((n_dialogues, runs))
    for c in range(n_dialogues):
        for t in range(turns[c].max()):
            live = t < turns[c]
            a = np.clip(rng.integers(1, 6, runs) + (rng.random(runs) < shift), 1, 5)
            sums[c] += live * (a - rng.integers(1, 6, runs))
    return sums, turns.astype(float)


@pytest.mark.parametrize("n_dialogues", [3, 10, 50])
def test_a_random_judge_marks_at_most_the_nominal_share_significant(n_dialogues):
    sums, counts = random_judge(n_dialogues, seed=n_dialogues)
    test = sign_flip_test(sums, counts, 1000, np.random.default_rng(0), 1 - ALPHA)
    marked = np.nan_to_num(test.p, nan=1.0) <= ALPHA
    assert marked.mean() <= ALLOWED
    # The old rule, a cluster bootstrap, marks far more at 3 dialogues (the reproduction).
    if n_dialogues == 3:
        reps = cluster_means(sums, counts, 1000, np.random.default_rng(0))[1]
        assert (bootstrap_p(reps) <= ALPHA).mean() > 2 * ALLOWED


def test_a_real_difference_is_detected_with_50_dialogues():
    sums, counts = random_judge(50, seed=7, shift=0.8)  # about +0.6 on the 1-5 scale
    test = sign_flip_test(sums, counts, 1000, np.random.default_rng(0), 1 - ALPHA)
    assert (test.p <= ALPHA).mean() >= 0.9
    assert (test.ci_low > 0).mean() >= 0.9


@pytest.mark.parametrize("n_dialogues", [6, 10, 50])
def test_the_interval_excludes_zero_exactly_when_the_difference_is_significant(n_dialogues):
    sums, counts = random_judge(n_dialogues, seed=11, shift=0.3, runs=200)
    test = sign_flip_test(sums, counts, 500, np.random.default_rng(0), 1 - ALPHA)
    assert np.isfinite(test.ci_low).all()
    assert ((test.ci_low <= test.diff) & (test.diff <= test.ci_high)).all()
    excludes = (test.ci_low > 0) | (test.ci_high < 0)
    assert (excludes == (test.p <= ALPHA)).all()


def test_exact_p_matches_full_enumeration_by_hand():
    sums = np.array([[3.0], [1.0], [2.0], [4.0], [5.0], [6.0]])
    counts = np.ones_like(sums)
    signs = 1 - 2 * ((np.arange(64)[:, None] >> np.arange(6)) & 1)
    expected = np.mean(np.abs(signs @ sums[:, 0]) >= 21)
    test = sign_flip_test(sums, counts, 10, np.random.default_rng(0))
    assert test.p[0] == pytest.approx(expected) == pytest.approx(2 / 64)


@pytest.mark.parametrize("n_dialogues", [2, 3, 5])
def test_below_the_minimum_nothing_is_significant_and_the_interval_says_why(n_dialogues):
    assert min_dialogues(0.95) == 6
    sums = np.full((n_dialogues, 1), 7.0)  # every dialogue favours the same model by a lot
    test = sign_flip_test(sums, np.full_like(sums, 7.0), 100, np.random.default_rng(0))
    assert test.p[0] == pytest.approx(2 / 2 ** n_dialogues) and test.p[0] > ALPHA
    assert np.isnan(test.ci_low[0]) and np.isnan(test.ci_high[0])
    assert test.ci_reason[0] == (f"{n_dialogues} dialogues: too few for a bounded 95% "
                                 "interval (a paired test over dialogues needs 6)")


def test_one_dialogue_has_no_interval_and_no_test():
    test = sign_flip_test(np.array([[5.0]]), np.array([[4.0]]), 100, np.random.default_rng(0))
    assert test.diff[0] == pytest.approx(1.25)
    assert np.isnan(test.ci_low[0]) and np.isnan(test.ci_high[0]) and np.isnan(test.p[0])
    assert test.ci_reason[0] == "one dialogue: no interval"
    assert test.p_reason[0] == "one dialogue: no test"
    single = estimate(0.5, None, np.full(100, 0.5), n_clusters=1).to_dict()
    assert single["ci_low"] is None and single["ci_low_reason"] == "one dialogue: no interval"


def test_swapping_identical_sides_never_rejects_and_a_random_swap_holds_its_level():
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(10), 3)
    x = rng.normal(size=30)
    assert swap_test(lambda a, b: a.mean(1) - b.mean(1), x, x, clusters, 200, rng) == 1.0
    p = [swap_test(lambda a, b: a.mean(1) - b.mean(1), rng.normal(size=30),
                   rng.normal(size=30), clusters, 200, rng) for _ in range(200)]
    assert np.mean(np.array(p) <= ALPHA) <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / 200)


# --------------------------------------------------------------------------- end to end


def random_rows(n_dialogues: int, turns: int, seed: int, dims=("empathy", "fluency",
                "helpfulness", "strategy")):
    """Judgment rows of two models from a judge that scores at random (uniform 1-5)."""
    rng = np.random.default_rng(seed)
    for d in range(n_dialogues):
        for t in range(turns):
            for model in ("model-a", "model-b"):
                for dim in dims:
                    score = float(rng.integers(1, 6))
                    yield absolute_row(item_id=f"d{d}:{t}", conversation_id=f"d{d}",
                                       turn_index=t, model=model, dimension=dim,
                                       score=score, weighted_score=score)


def board_of(tmp_path, rows, name):
    write_jsonl(rows, tmp_path / name / "judgments.jsonl")
    return leaderboard(load_judgments([tmp_path / name]), rounds=300, seed=0)


@pytest.mark.parametrize("seed", range(5))
def test_the_reported_small_run_marks_nothing_and_shows_why(tmp_path, seed):
    """The issue's run: 21 items from 3 dialogues, four dimensions, a random judge."""
    board = board_of(tmp_path, random_rows(3, 7, seed), "small")
    assert board["comparisons"]
    for c in board["comparisons"]:
        assert not c["significant"] and c["p"] >= 0.25 and c["n_dialogues"] == 3
        assert c["ci_low"] is None and "3 dialogues: too few" in c["ci_reason"]
    assert any("only 3 dialogues" in n for n in board["notes"])
    md = leaderboard_markdown(board)
    assert "(3 dialogues)" in md and "3 dialogues: too few" in md and "| yes |" not in md
    html = report_html(board)
    assert "3 dialogues: too few" in html and " ✓</b>" not in html


def test_ten_random_judge_dialogues_show_their_count_next_to_every_interval(tmp_path):
    board = board_of(tmp_path, random_rows(10, 3, 1), "ten")
    md = leaderboard_markdown(board)
    table = [line for line in md.splitlines() if line.startswith("| 1 |")][0]
    assert table.count("(10 dialogues)") == table.count("[")
    assert all(c["ci_low"] is not None for c in board["comparisons"])
    assert "· 10 dialogues" in report_html(board)
    assert "n_dialogues" in leaderboard_csv(board).splitlines()[0]


def test_a_single_dialogue_gives_no_interval_anywhere_and_a_visible_note(tmp_path):
    board = board_of(tmp_path, random_rows(1, 6, 2), "one")
    for m in board["models"]:
        for entry in m["scores"]["judge-x"].values():
            assert entry["ci_low"] is None and entry["ci_high"] is None
            assert entry["ci_reason"] == "one dialogue: no interval"
    for c in board["comparisons"]:
        assert c["p"] is None and c["p_reason"] == "one dialogue: no test"
        assert c["ci_low"] is None and c["ci_reason"] == "one dialogue: no interval"
        assert not c["significant"]
    rows = board["breakdowns"]["judge-x"]["stage"]["rows"]
    assert all(r["ci_low"] is None and r["ci_reason"] for r in rows)
    assert "one dialogue: no intervals and no significance tests" in board["notes"]
    assert "(one dialogue: no interval)" in leaderboard_markdown(board)
    assert "one dialogue: no interval" in breakdowns_csv(board)
    assert "one dialogue: no interval" in report_html(board)
