"""`csc-harness simulate` end to end against a loopback stub, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from test_simulate_support import role_of, scripted

from csc_harness.cli import main
from csc_harness.llm import StubServer


def args(stub: StubServer, tmp_path, *extra: str) -> list[str]:
    return ["simulate", "--model", "openai/cand-a", "--model", "openai/cand-b",
            "--api-base", stub.base_url, "--customer", "openai/cust",
            "--customer-api-base", stub.base_url, "--scenarios", "3", "--max-turns", "9",
            "--cache", str(tmp_path / "cache.sqlite"), "--rounds", "50", "--no-progress",
            "--out", str(tmp_path / "out"), *extra]


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_simulate_writes_transcripts_judgments_board_and_report(tmp_path, capsys):
    with StubServer(scripted(finished_after=6)) as stub:
        code = main(args(stub, tmp_path, "--judge", "openai/judge", "--judge-api-base",
                         stub.base_url))
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "out"
    transcripts = rows(out / "transcripts.jsonl")
    assert Counter(r["model"] for r in transcripts) == {"openai/cand-a": 3, "openai/cand-b": 3}
    assert {r["end_reason"] for r in transcripts} == {"customer_ended"}
    assert len(rows(out / "scenarios.jsonl")) == 3
    judged = rows(out / "judge" / "conversation" / "judgments.jsonl")
    assert len(judged) == 6 * 3 and {r["status"] for r in judged} == {"ok"}
    assert all(r["turn_index"] is None and r["conversation_id"] == r["item_id"] for r in judged)
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["metrics"]["openai/cand-a"]["opens_with_greeting"]["mean"] == 1.0
    assert "Problem resolution" in (out / "leaderboard.md").read_text()
    html = (out / "report.html").read_text()
    assert "When did you send it?" in html and "Problem Refinement" in html


def test_rubric_both_gives_each_variant_its_own_judge_folder_and_run_record(tmp_path):
    with StubServer(scripted(finished_after=6)) as stub:
        assert main(args(stub, tmp_path, "--judge", "openai/judge", "--judge-api-base",
                         stub.base_url, "--rubric", "both")) == 0
    judge = tmp_path / "out" / "judge"
    for variant, dimensions in (("conversation", 3), ("conversation_rolecs", 5)):
        record = json.loads((judge / variant / "run.json").read_text())
        assert record["status"] == "complete" and record["config"]["variant"] == variant
        judged = rows(judge / variant / "judgments.jsonl")
        assert len(judged) == 6 * dimensions and {r["variant"] for r in judged} == {variant}
        assert {r["status"] for r in judged} == {"ok"}
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    judging = run["steps"]["judging"]
    assert {judging[v]["dir"] for v in ("conversation", "conversation_rolecs")} == {
        "judge/conversation", "judge/conversation_rolecs"}
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert set(board["judged"]) == {"conversation", "conversation_rolecs"}


def test_a_rerun_reuses_scenarios_and_finished_conversations(tmp_path):
    with StubServer(scripted(finished_after=6)) as stub:
        assert main(args(stub, tmp_path)) == 0
        first = len(stub.requests)
        assert main(args(stub, tmp_path)) == 0
        assert len(stub.requests) == first  # nothing asked again
    assert len(rows(tmp_path / "out" / "transcripts.jsonl")) == 6


def test_user_scenarios_file_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"persona": "x", "topic": "t", "goal": "g"}\n', encoding="utf-8")
    with StubServer(scripted()) as stub:
        code = main(args(stub, tmp_path, "--scenarios-file", str(bad)))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "'opening'" in err and "line 1" in err


_CHILD = """
import sys
from csc_harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_resume_after_kill_9_loses_and_duplicates_no_conversation(tmp_path):
    with StubServer(scripted(finished_after=9), latency=0.05) as stub:
        argv = args(stub, tmp_path, "--concurrency", "1")
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        child = subprocess.Popen([sys.executable, "-c", _CHILD, *argv], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = tmp_path / "out" / "transcripts.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if path.exists() and path.read_text(encoding="utf-8").count("\n") >= 2:
                break
            time.sleep(0.02)
        time.sleep(0.3)  # into the middle of the next conversation
        assert child.poll() is None, "the run finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
        before = len(rows(path))
        assert 2 <= before < 6
        sent = len(stub.requests)
        assert main(argv) == 0
        bodies = Counter(json.dumps(b, sort_keys=True) for b in stub.requests)
    final = rows(path)
    assert len(final) == 6
    assert len({(r["conversation_id"], r["model"]) for r in final}) == 6
    # calls answered before the kill were not paid again: at most the one in flight repeats
    assert sum(n - 1 for n in bodies.values()) <= 1, sent
    assert {role_of(b) for b in stub.requests} >= {"planner", "coach", "customer", "supporter"}
