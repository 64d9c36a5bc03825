"""Recorded provider answers replayed offline (tests/recordings, written by record.py).

No server runs here: every answer comes from the committed cache in ``replay`` mode, so the
judge suite exercises real-format answers (dated model ids, usage, prices, logprobs) with
the network guard on. A template edit makes these fail with a replay-miss message: re-run
``python tests/recordings/record.py``.
"""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from test_judge_support import RECORDED_CACHE, RECORDED_CANDIDATES, RECORDED_RUNS, read_rows, run

from csc_harness.errors import CacheMiss
from csc_harness.judge import JudgeConfig, load_candidates

STRONG, WEAK = "Qwen2.5-72B-Instruct+RoleCS", "Qwen2.5-7B-Instruct"


@pytest.fixture
def replay(tmp_path):
    cache = tmp_path / "recorded.sqlite"
    shutil.copyfile(RECORDED_CACHE, cache)  # replay never writes, but SQLite adds -wal files

    def go(name: str):
        out = tmp_path / name
        try:
            result = run(JudgeConfig(**RECORDED_RUNS[name]),
                         load_candidates([RECORDED_CANDIDATES]), out, cache_path=cache,
                         cache_mode="replay")
        except CacheMiss as exc:
            pytest.fail(f"recordings are stale ({exc}); run python tests/recordings/record.py")
        return result, read_rows(out)

    return go


def test_recorded_panel_replays_with_provider_metadata(replay):
    result, rows = replay("separate")
    assert len(rows) == 6 * 2 * 3 * 2 and all(r["cached"] for r in rows)
    assert {r["response_model"] for r in rows} == {"gpt-4o-mini-2024-07-18",
                                                   "gpt-4.1-nano-2025-04-14"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["cost_usd"] is not None and r["cost_usd"] > 0 for r in ok)
    assert all(r["prompt_tokens"] > 500 for r in ok)
    agreement = result.summary["agreement"]["empathy"]["openai/gpt-4o-mini | openai/gpt-4.1-nano"]
    assert agreement["n"] == 12 - 3, "the three invalid verdicts are left out, not scored"


def test_recorded_prose_answer_is_parsed_from_its_last_score_line(replay):
    _result, rows = replay("separate")
    prose = [r for r in rows if r["judge"] == "openai/gpt-4.1-nano" and r["model"] == WEAK
             and r["language"] == "en"]
    assert len(prose) == 9
    assert {(r["status"], r["score"]) for r in prose} == {("ok", 2.0)}
    assert all(r["raw"].endswith("Score: 2") and r["rationale"].startswith("The agent")
               for r in prose)


def test_recorded_off_scale_answer_is_invalid_not_clipped(replay):
    result, rows = replay("separate")
    off = [r for r in rows if r["judge"] == "openai/gpt-4.1-nano" and r["model"] == WEAK
           and r["language"] == "zh"]
    assert {(r["status"], r["score"]) for r in off} == {("invalid", None)}
    assert all('"score": 6' in r["raw"] for r in off)
    statuses = result.summary["statuses"]["openai/gpt-4.1-nano"]
    assert sum(s["invalid"] for s in statuses.values()) == 9


def test_recorded_joint_reference_guided_run(replay):
    _result, rows = replay("joint_reference")
    assert len(rows) == 36 and Counter(r["status"] for r in rows) == {"ok": 36}
    assert {r["mode"] for r in rows} == {"joint"} and {r["reference_guided"] for r in rows} == {True}
    per_call = Counter((r["item_id"], r["model"], r["raw"]) for r in rows)
    assert len(per_call) == 12 and set(per_call.values()) == {3}


def test_recorded_pairwise_run_is_order_consistent(replay):
    result, rows = replay("pairwise")
    assert len(rows) == 36 and {r["winner"] for r in rows} == {"a"}
    assert {(r["model_a"], r["model_b"]) for r in rows} == {(STRONG, WEAK)}
    tally = result.summary["pairwise"]["openai/gpt-4o-mini"]["empathy"]
    assert tally["inconsistency_rate"] == 0.0 and tally["win_rate_a"] == 1.0


def test_recorded_logprobs_give_weighted_scores_including_10(replay):
    _result, rows = replay("scale10_logprobs")
    assert {(r["scale_min"], r["scale_max"]) for r in rows} == {(1, 10)}
    weighted = {r["model"]: (r["score"], r["weighted_score"]) for r in rows}
    assert weighted[STRONG] == (10.0, pytest.approx(10 * 0.7 + 9 * 0.2 + 8 * 0.1))
    assert weighted[WEAK] == (3.0, pytest.approx(3 * 0.5 + 4 * 0.3 + 2 * 0.2))


def test_replay_of_a_prompt_that_was_never_recorded_fails_clearly(replay, tmp_path):
    cache = tmp_path / "c.sqlite"
    shutil.copyfile(RECORDED_CACHE, cache)
    with pytest.raises(CacheMiss, match="no cached answer from 'openai/gpt-4o-mini'"):
        run(JudgeConfig(judges=("openai/gpt-4o-mini",), variant="scale10"),
            load_candidates([RECORDED_CANDIDATES]), tmp_path / "out", cache_path=cache,
            cache_mode="replay")


def test_recorded_rows_load_in_the_analysis_module(replay):
    rows_module = pytest.importorskip("csc_harness.analysis.rows")
    _result, _rows = replay("separate")
    loaded = rows_module.load_judgments([_result.out_dir])
    assert len(loaded.absolute) == 72
