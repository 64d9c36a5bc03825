"""`csc-harness judge --batch` end to end: the batch price in --dry-run, a whole batch run
through the CLI, and kill -9 while polling followed by a resume that submits nothing new."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from test_judge_support import examples, read_rows, write_jsonl

from csc_harness.cli import main
from csc_harness.llm import StubReply
from csc_harness.llm.batch import BATCHES_FILE
from csc_harness.llm.batch_stub import BatchStubServer

GPT = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4-5"
_CHILD = """
import sys
from csc_harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def verdict(body: dict) -> StubReply:
    return StubReply('{"empathy": {"rationale": "Warm.", "score": 4}, '
                     '"problem_resolution": {"rationale": "Solved.", "score": 4}, '
                     '"strategy_adherence": {"rationale": "Fits.", "score": 4}}')


def argv(stub: BatchStubServer, tmp_path, model: str = GPT, *extra: str) -> list[str]:
    cands = write_jsonl(tmp_path / "candidates.jsonl", [
        {"item_id": ex.item_id, "model": "model-a", "reply": f"[{ex.strategy}] {ex.reply}"}
        for ex in examples(3)])
    base = stub.root_url if model.startswith("anthropic/") else stub.base_url
    return ["judge", "--candidates", str(cands), "--judge", model, "--api-base", base,
            "--mode", "joint", "--cache", str(tmp_path / "cache.sqlite"),
            "--out", str(tmp_path / "out"), "--no-progress", "--batch", *extra]


def chat_calls(stub: BatchStubServer) -> int:
    return sum(p.endswith("/chat/completions") for p in stub.paths) + stub.message_calls


def dry_cost(capsys) -> tuple[float, str]:
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "cost" in line)
    return float(re.search(r"\$([0-9.]+)", line).group(1)), line


def test_dry_run_batch_shows_the_batch_price_and_calls_nothing(tmp_path, capsys):
    with BatchStubServer(verdict) as stub:
        assert main([a for a in argv(stub, tmp_path) if a != "--batch"] + ["--dry-run"]) == 0
        online, _ = dry_cost(capsys)
        assert main(argv(stub, tmp_path, GPT, "--dry-run")) == 0
        batch, line = dry_cost(capsys)
        assert not stub.paths and stub.batch_creates == 0
    assert "(provider batch price)" in line
    assert batch == pytest.approx(online / 2, rel=0.05)  # as printed (4 decimals)


def test_judge_batch_runs_through_the_cli_and_a_re_run_asks_nothing(tmp_path, capsys):
    with BatchStubServer(verdict, polls=2) as stub:
        args = argv(stub, tmp_path, GPT, "--batch-poll", "0.01")
        assert main(args) == 0, capsys.readouterr().err
        assert stub.batch_creates == 1 and chat_calls(stub) == 0
        rows = read_rows(tmp_path / "out")
        session = json.loads((tmp_path / "out" / "run.json").read_text())["session"]
        seen = len(stub.paths)
        assert main(args) == 0
        assert len(stub.paths) == seen  # nothing read or sent: every answer is cached
    assert len(rows) == 3 * 3 and {r["status"] for r in rows} == {"ok"}
    assert session["batch_calls"] == session["calls"] == 3 and session["cache_hits"] == 0


@pytest.mark.parametrize("model", [pytest.param(GPT, id="openai"),
                                   pytest.param(CLAUDE, id="anthropic")])
def test_kill_9_while_polling_then_the_same_command_resumes_without_a_second_batch(
        tmp_path, model, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    with BatchStubServer(verdict, polls=10**9) as stub:
        args = argv(stub, tmp_path, model, "--batch-poll", "0.05")
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        child = subprocess.Popen([sys.executable, "-c", _CHILD, *args], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if any(b["reads"] >= 3 for b in stub.batches.values()):  # polling, not done
                break
            time.sleep(0.02)
        assert child.poll() is None, "the run ended before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
        state = json.loads((tmp_path / "out" / BATCHES_FILE).read_text())
        assert [b["status"] for b in state["batches"]] == ["submitted"]
        assert not (tmp_path / "out" / "judgments.jsonl").is_file() \
            or not read_rows(tmp_path / "out")
        stub.polls = 0  # the provider finishes the batch while nothing is running
        assert main(args) == 0
        assert stub.batch_creates == 1 and chat_calls(stub) == 0
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 3 * 3 and {r["status"] for r in rows} == {"ok"}
    assert all(not r["cached"] for r in rows)  # answers of the batch paid before the kill
    state = json.loads((tmp_path / "out" / BATCHES_FILE).read_text())
    assert [b["status"] for b in state["batches"]] == ["collected"]
