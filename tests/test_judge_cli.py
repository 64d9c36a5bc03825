"""``csc-harness judge`` end to end: exit codes, one-line errors, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_judge_support import examples, fake_judge, read_rows, write_jsonl

from csc_harness.cli import main
from csc_harness.judge import row_key
from csc_harness.llm import StubServer

ROOT = Path(__file__).resolve().parents[1]


def candidate_file(tmp_path: Path, n: int = 2, models=("model-a",)) -> Path:
    return write_jsonl(tmp_path / "candidates.jsonl", [
        {"item_id": ex.item_id, "model": m, "reply": f"[{ex.strategy}] {ex.reply}"}
        for ex in examples(n) for m in models])


def args(stub, tmp_path: Path, *extra: str) -> list[str]:
    return ["judge", "--candidates", str(candidate_file(tmp_path)), "--judge", "openai/judge",
            "--api-base", stub.base_url, "--cache", str(tmp_path / "cache.sqlite"),
            "--out", str(tmp_path / "out"), "--no-progress", *extra]


def test_judge_prints_a_line_per_judge_and_dimension_and_the_output_paths(tmp_path, capsys):
    with StubServer(fake_judge) as stub:
        code = main(args(stub, tmp_path, "--judge", "openai/judge-b"))
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert sum(line.startswith(("openai/judge · ", "openai/judge-b · ")) for line in out) == 6
    assert any(line.startswith("panel · empathy: mean ") for line in out)
    assert any(line.startswith("agreement · empathy · ") for line in out)
    assert out[-2:] == [f"judgments: {tmp_path / 'out' / 'judgments.jsonl'}",
                        f"run: {tmp_path / 'out' / 'run.json'}"]


@pytest.mark.parametrize("extra, message", [
    pytest.param(["--candidates", "missing.jsonl"], "does not exist", id="missing-file"),
    pytest.param(["--dimensions", "humour"], "no separate template", id="unknown-dimension"),
    pytest.param(["--variant", "v9"], "no judge template has variant 'v9'", id="unknown-variant"),
    pytest.param(["--samples", "0"], "samples must be", id="bad-samples"),
    pytest.param(["--samples", "3", "--temperature", "0"], "temperature > 0", id="k-at-t0"),
    pytest.param(["--concurrency", "0"], "need concurrency >= 1", id="bad-concurrency"),
    pytest.param(["--pairwise"], "at least two candidate models", id="pairwise-one-model"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, extra, message):
    with StubServer([]) as stub:
        code = main(args(stub, tmp_path, *extra))
        assert stub.requests == []
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("csc-harness judge: error: ")
    assert message in err


def test_a_malformed_candidate_line_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "zh-001:0", "model": "m", "reply": "hi"}\n{oops\n')
    with StubServer([]) as stub:
        code = main(args(stub, tmp_path, "--candidates", str(bad)))
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"{bad}, line 2: invalid JSON" in err


def test_dry_run_prints_an_estimate_and_makes_no_requests(tmp_path, capsys):
    with StubServer([]) as stub:
        code = main(args(stub, tmp_path, "--judge", "openai/gpt-4o-mini", "--dry-run"))
        assert stub.requests == [] and stub.errors == []
    out = capsys.readouterr().out
    assert code == 0 and "dry run · provider calls: 12 (0 answered from the cache)" in out
    assert "cost: unknown (no price for openai/judge)" in out
    assert not (tmp_path / "out").exists()


def test_max_cost_exits_3_with_a_resume_hint(tmp_path, capsys):
    with StubServer(fake_judge) as stub:
        code = main(["judge", "--candidates", str(candidate_file(tmp_path, 4)),
                     "--judge", "openai/gpt-4o-mini", "--api-base", stub.base_url,
                     "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "out"),
                     "--max-cost", "0.002", "--concurrency", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "re-run with a higher --max-cost" in err
    assert 0 < len(read_rows(tmp_path / "out")) < 12


def test_replay_miss_is_a_one_line_error(tmp_path, capsys):
    with StubServer([]) as stub:
        code = main(args(stub, tmp_path, "--cache-mode", "replay"))
        assert stub.requests == []
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "replay mode forbids provider calls" in err


def test_help_is_fast_and_imports_nothing_heavy():
    probe = ("import time, sys; t = time.perf_counter(); from csc_harness.cli import build_parser;"
             "build_parser().format_help(); print(time.perf_counter() - t);"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('litellm', 'jinja2', 'tqdm', 'pandas', 'yaml', 'lm_eval') "
             "or m.startswith(('csc_harness.judge', 'csc_harness.llm'))))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, check=True)
    seconds, heavy = proc.stdout.splitlines()
    assert float(seconds) < 0.5 and heavy == "[]"


def cached_requests(cache: Path) -> set[str]:
    """The messages of every answer in the cache (read while another process may write)."""
    with sqlite3.connect(cache, timeout=30) as db:
        rows = db.execute("SELECT request FROM responses").fetchall()
    return {json.dumps(json.loads(r)["messages"], ensure_ascii=False) for (r,) in rows}


def test_killed_run_resumes_with_no_loss_no_duplicates_and_no_calls_for_done_work(tmp_path):
    n_items, out, cache = 30, tmp_path / "out", tmp_path / "cache.sqlite"
    total = n_items * 3
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with StubServer(fake_judge, latency=0.08) as stub:
        command = [sys.executable, "-m", "csc_harness.cli", "judge", "--candidates",
                   str(candidate_file(tmp_path, n_items)), "--judge", "openai/judge",
                   "--api-base", stub.base_url, "--cache", str(cache), "--out", str(out),
                   "--concurrency", "4", "--no-progress"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            path = out / "judgments.jsonl"
            if path.exists() and path.read_text().count("\n") >= 12:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        written = len(read_rows(out))
        paid = cached_requests(cache)
        first_requests = len(stub.requests)
        assert 12 <= written < total and written <= len(paid) < total

        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                                 check=False)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        second = stub.requests[first_requests:]
    asked_again = {json.dumps(b["messages"], ensure_ascii=False) for b in second}
    assert not asked_again & paid, "work already paid for was asked again"
    assert len(second) == total - len(paid)
    rows = read_rows(out)
    assert len(rows) == total and len({row_key(r) for r in rows}) == total
    assert all(r["status"] == "ok" for r in rows)
