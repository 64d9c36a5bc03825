"""End to end: rows written by the real judge module (against the loopback stub judge, no
network) become leaderboard files and a report. Uses the judge suite's scripted fake judge
(tests/test_judge_support.py); skipped with a reason if that helper is not there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csc_harness.cli import main

support = pytest.importorskip("test_judge_support",
                              reason="the judge suite's fake judge (tests/test_judge_support.py)")
llm = pytest.importorskip("csc_harness.llm", reason="the provider layer (csc_harness.llm)")
CANDIDATES = Path(__file__).resolve().parent / "recordings" / "candidates.jsonl"


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    if not CANDIDATES.exists():
        pytest.skip(f"no recorded candidates at {CANDIDATES}")
    out = tmp_path_factory.mktemp("e2e")
    with llm.StubServer(support.fake_judge) as stub:
        base = ["judge", "--candidates", str(CANDIDATES), "--api-base", stub.base_url,
                "--cache", str(out / "cache.sqlite"), "--no-progress"]
        assert main([*base, "--judge", "openai/judge-a", "--judge", "openai/judge-b",
                     "--out", str(out / "absolute")]) == 0
        assert main([*base, "--judge", "openai/judge-a", "--pairwise",
                     "--out", str(out / "pairwise")]) == 0
    return out


def test_judge_rows_become_a_leaderboard_with_panel_and_position_checks(judged, capsys):
    board_dir = judged / "board"
    code = main(["leaderboard", "--judgments", str(judged / "absolute"),
                 str(judged / "pairwise"), "--out", str(board_dir), "--rounds", "100"])
    assert code == 0
    board = json.loads((board_dir / "leaderboard.json").read_text())
    models = {json.loads(line)["model"] for line in CANDIDATES.read_text().splitlines()}
    assert {m["model"] for m in board["models"]} == models
    assert board["settings"]["judges"] == ["openai/judge-a", "openai/judge-b", "panel"]
    assert {p["judge"] for p in board["bias"]["position"]} == {"openai/judge-a"}
    assert all(p["n_pairs"] > 0 for p in board["bias"]["position"])
    assert board["provenance"]["runs"]  # run.json was read
    html = (board_dir / "report.html").read_text()
    assert all(m in html for m in models)
