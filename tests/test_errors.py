"""One-line errors, always: bad input exits 2, an environment fault exits 1, never a
traceback, and nothing already paid for is lost (issue 10, section 4)."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_judge_support import examples, fake_judge, read_rows, write_jsonl

from csc_harness.analysis.synthetic import synthetic_rows
from csc_harness.analysis.synthetic import write_jsonl as write_rows
from csc_harness.cli import build_parser, main
from csc_harness.jsonl import write_json_atomic
from csc_harness.judge import JudgmentStore
from csc_harness.judge.candidates import MAX_REPLY_CHARS
from csc_harness.llm import StubServer

ROOT = Path(__file__).resolve().parents[1]


def candidate_file(tmp_path: Path, n: int = 2, reply: str | None = None) -> Path:
    return write_jsonl(tmp_path / "candidates.jsonl", [
        {"item_id": ex.item_id, "model": "model-a",
         "reply": f"[{ex.strategy}] {reply if reply is not None else ex.reply}"}
        for ex in examples(n)])


def judge_args(stub: StubServer, tmp_path: Path, *extra: str, n: int = 2) -> list[str]:
    return ["judge", "--candidates", str(candidate_file(tmp_path, n)), "--judge",
            "openai/judge", "--api-base", stub.base_url, "--cache",
            str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "out"), "--no-progress",
            *extra]


def one_line_error(capsys, code: int, expected: int = 2) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == expected, err
    assert err.count("\n") == 1 and " error: " in err, err
    return err


# -- options --------------------------------------------------------------------------------
REQUIRED = {
    "run": [], "generate": [], "judge": ["--candidates", "c.jsonl", "--judge", "openai/j"],
    "leaderboard": ["--judgments", "j"], "correlate": ["--human", "h.csv", "--judgments", "j"],
    "ablate": ["--config", "a.yaml"], "check_judge": ["--judge", "openai/j"], "simulate": [],
}


def _commands_with_out() -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name.replace("-", "_") for name, parser in sub.choices.items()
            if any("--out" in a.option_strings for a in parser._actions)}


def test_the_table_below_lists_every_command_with_out():
    assert _commands_with_out() <= set(REQUIRED)


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_an_empty_out_is_refused_by_every_command(command, capsys):
    code = main([command.replace("_", "-"), *REQUIRED[command], "--out", ""])
    assert "--out must name a folder" in one_line_error(capsys, code)


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_an_out_that_is_a_file_is_refused_by_every_command(command, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code = main([command.replace("_", "-"), *REQUIRED[command], "--out", str(tmp_path / "f")])
    assert "is a file, not a folder" in one_line_error(capsys, code)


@pytest.mark.parametrize("argv", [
    pytest.param(["leaderboard", "--judgments", "j", "--out", "o"], id="leaderboard"),
    pytest.param(["correlate", "--human", "h.csv", "--judgments", "j", "--out", "o"],
                 id="correlate"),
    pytest.param(["run", "--out", "o"], id="run"),
])
def test_an_oversized_rounds_is_a_one_line_error(argv, capsys):
    code = main([*argv, "--rounds", str(10**12)])
    assert "--rounds must be at most 100,000" in one_line_error(capsys, code)


def test_an_oversized_rounds_in_an_ablation_config_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / "a.yaml"
    config.write_text(f"candidates: c.jsonl\njudges: [openai/j]\ngrid:\n  mode: [joint]\n"
                      f"analysis:\n  rounds: {10**12}\n")
    code = main(["ablate", "--config", str(config), "--out", str(tmp_path / "o"), "--dry-run"])
    assert "at most 100,000 rounds" in one_line_error(capsys, code)


@pytest.mark.parametrize("argv", [
    pytest.param(["generate", "--model", "notaprovider/x"], id="generate"),
    pytest.param(["run", "--model", "notaprovider/x"], id="run"),
    pytest.param(["check-judge", "--judge", "notaprovider/x"], id="check-judge"),
])
def test_an_unknown_provider_prefix_is_bad_input(argv, tmp_path, capsys):
    code = main([*argv, "--out", str(tmp_path / "o")])
    assert "unknown provider 'notaprovider'" in one_line_error(capsys, code)


def test_an_unknown_provider_prefix_is_refused_before_any_call(tmp_path, capsys):
    with StubServer(fake_judge) as stub:
        code = main(judge_args(stub, tmp_path, "--judge", "notaprovider/x"))
        assert "unknown provider 'notaprovider'" in one_line_error(capsys, code)
        assert stub.requests == []
    assert not (tmp_path / "out" / "judgments.jsonl").exists()


# -- files ----------------------------------------------------------------------------------
def test_infinity_in_a_metrics_file_names_the_file(tmp_path, capsys):
    write_rows(synthetic_rows(("m",), dialogues=3, turns=2, seed=1),
               tmp_path / "j" / "judgments.jsonl")
    metrics = tmp_path / "lm" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text('{"model": "m", "setting": "reference", "metrics": {"bleu2": Infinity}}')
    code = main(["leaderboard", "--judgments", str(tmp_path / "j"), "--lm-eval",
                 str(metrics.parent), "--out", str(tmp_path / "o")])
    assert f"{metrics}: invalid JSON (Infinity" in one_line_error(capsys, code)


def test_deeply_nested_candidates_name_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text('{"item_id": "x", "model": "m", "reply": "r"}\n' + "[" * 100_000 + "\n")
    code = main(["judge", "--candidates", str(path), "--judge", "openai/j", "--out",
                 str(tmp_path / "o"), "--dry-run"])
    assert f"{path}, line 2: JSON nested too deeply" in one_line_error(capsys, code)


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: p.mkdir(), id="directory"),
    pytest.param(lambda p: p.write_bytes(b"not a database at all" * 100), id="corrupt"),
    pytest.param(lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x01" * 30), id="truncated"),
])
def test_an_unusable_cache_file_is_one_line_before_any_call(make, tmp_path, capsys):
    make(tmp_path / "cache.sqlite")
    with StubServer(fake_judge) as stub:
        code = main(judge_args(stub, tmp_path))
        assert "as the response cache" in one_line_error(capsys, code)
        assert stub.requests == []


def test_judgments_file_that_is_a_directory_is_refused_before_any_call(tmp_path, capsys):
    (tmp_path / "out" / "judgments.jsonl").mkdir(parents=True)
    with StubServer(fake_judge) as stub:
        code = main(judge_args(stub, tmp_path))
        assert "is not a file" in one_line_error(capsys, code)
        assert stub.requests == []


# -- disk full ------------------------------------------------------------------------------
def _disk_full_for(monkeypatch, name: str, *, after: int = 0) -> None:
    """``os.write`` on files called ``name`` writes ``after`` bytes, then fails with ENOSPC."""
    real = os.write
    left = {"bytes": after}

    def write(fd: int, data) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not os.path.basename(target).endswith(name):
            return real(fd, data)
        if left["bytes"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, bytes(data[:left["bytes"]]))
        left["bytes"] -= n
        return n

    monkeypatch.setattr(os, "write", write)


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"old": True})
    _disk_full_for(monkeypatch, "run.json.tmp", after=5)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(path, {"new": "x" * 10_000})
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_failed_batch_is_cut_back_to_whole_lines_and_not_counted_done(tmp_path, monkeypatch):
    store = JudgmentStore(tmp_path)
    row = {"item_id": "i", "model": "m", "judge": "j", "dimension": "d", "status": "ok"}
    store.add([row])
    store.flush()
    _disk_full_for(monkeypatch, "judgments.jsonl", after=7)
    store.add([{**row, "item_id": "k"}])
    with pytest.raises(OSError):
        store.flush()
    assert (tmp_path / "judgments.jsonl").read_text().count("\n") == 1
    assert [json.loads(x)["item_id"] for x in (tmp_path / "judgments.jsonl").open()] == ["i"]
    assert len(store.records) == 1


def test_disk_full_while_judging_exits_1_in_one_line_and_the_rerun_pays_nothing(
        tmp_path, capsys, monkeypatch):
    with StubServer(fake_judge) as stub:
        with monkeypatch.context() as patch:
            _disk_full_for(patch, "judgments.jsonl", after=100)
            code = main(judge_args(stub, tmp_path, n=3))
        err = one_line_error(capsys, code, expected=1)
        assert "No space left on device" in err and "re-run" in err
        out = tmp_path / "out"
        text = (out / "judgments.jsonl").read_text()
        assert text == "" or text.endswith("\n")
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        assert json.loads((out / "run.json").read_text())["status"] == "incomplete"
        paid = {json.dumps(b["messages"]) for b in stub.requests}
        assert main(judge_args(stub, tmp_path, n=3)) == 0
        again = {json.dumps(b["messages"]) for b in stub.requests[len(paid):]}
        assert not again & paid  # every answer paid for came from the cache
    assert all(r["status"] == "ok" for r in read_rows(out))


def test_a_cache_that_cannot_be_written_warns_once_and_the_run_goes_on(
        tmp_path, capsys, monkeypatch, caplog):
    from csc_harness.llm import _writer

    def disk_full(db, batch):
        for _, done in batch:
            done.set_exception(sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(_writer.Writer, "_commit", staticmethod(disk_full))
    with StubServer(fake_judge) as stub, caplog.at_level(logging.WARNING):
        code = main(judge_args(stub, tmp_path, n=4))
    assert code == 0, capsys.readouterr().err
    warnings = [r for r in caplog.records if "cannot write to the response cache" in
                r.getMessage()]
    assert len(warnings) == 1 and len(stub.requests) > 1
    assert len(read_rows(tmp_path / "out")) == len(stub.requests)


# -- signals --------------------------------------------------------------------------------
def test_sigterm_stops_like_ctrl_c_and_marks_the_run_incomplete(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with StubServer(fake_judge, latency=0.3) as stub:
        command = [sys.executable, "-m", "csc_harness.cli", *judge_args(stub, tmp_path, n=20)[:],
                   "--concurrency", "2"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(stub.requests) < 2 and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("csc-harness judge: terminated (SIGTERM); re-run "
                                             "the same command to resume")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "incomplete" and run["remaining"] > 0


# -- replies and ratings --------------------------------------------------------------------
def test_an_oversized_reply_is_cut_counted_and_announced_by_the_dry_run(tmp_path, capsys,
                                                                        caplog):
    long = "很长的回复。" * (MAX_REPLY_CHARS // 3)
    path = candidate_file(tmp_path, 2, reply=long)
    with StubServer(fake_judge) as stub:
        base = ["judge", "--candidates", str(path), "--judge", "openai/judge", "--api-base",
                stub.base_url, "--cache", str(tmp_path / "c.sqlite"), "--out",
                str(tmp_path / "out"), "--no-progress", "--dimensions", "empathy"]
        assert main([*base, "--dry-run"]) == 0
        printed = capsys.readouterr()
        assert f"warning: 2 repl(ies) over {MAX_REPLY_CHARS:,} characters" in printed.out
        assert main(base) == 0
        prompts = [b["messages"][-1]["content"] for b in stub.requests]
    assert all(long not in p and long[:MAX_REPLY_CHARS] in p for p in prompts)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["plan"]["truncated_replies"] == 2
    assert "cut to 20,000 for judging" in caplog.text


def test_ratings_off_the_scale_or_never_judged_are_counted_not_dropped(tmp_path, capsys):
    rows = list(synthetic_rows(("alpha", "beta"), dialogues=6, turns=2, seed=3))
    write_rows(rows, tmp_path / "j" / "judgments.jsonl")
    ok = [r for r in rows if r["status"] == "ok" and r.get("kind", "absolute") == "absolute"]
    lines = ["item_id,model,dimension,rater,score"]
    lines += [f"{r['item_id']},{r['model']},{r['dimension']},ann,{r['score']}" for r in ok]
    lines += [f"{ok[0]['item_id']},{ok[0]['model']},{ok[0]['dimension']},bob,9",
              f"never:1,alpha,{ok[0]['dimension']},ann,3"]
    (tmp_path / "h.csv").write_text("\n".join(lines) + "\n")
    code = main(["correlate", "--human", str(tmp_path / "h.csv"), "--judgments",
                 str(tmp_path / "j"), "--out", str(tmp_path / "o"), "--rounds", "20"])
    assert code == 0, capsys.readouterr().err
    ratings = json.loads((tmp_path / "o" / "correlation.json").read_text())["ratings"]
    assert ratings | {"scales": None} == {"total": len(ok) + 2, "used": len(ok),
                                          "not_judged": 1, "outside_scale": 1, "scales": None}
    md = (tmp_path / "o" / "correlation.md").read_text()
    assert "1 for items, models or dimensions never judged and 1 outside" in md
