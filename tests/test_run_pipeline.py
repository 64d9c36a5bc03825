"""The main job end to end with the embedded model, through the real llama.cpp server."""

import json
import os
from pathlib import Path

import pytest

from csc_harness.cli import main
from csc_harness.llm import local
from csc_harness.rollout import EMBEDDED_MAX_TOKENS

pytest.importorskip("llama_cpp", reason="needs the local extra: pip install -e '.[local]'")


def local_servers() -> list[int]:
    """Pids of embedded-model servers started by this test process."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"csc_harness.llm._local_child" in cmdline and str(os.getpid()).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    code = main(["run", "--limit", "1", "--rounds", "50", "--no-progress", "--out", str(out),
                 "--cache", str(out.parent / "cache" / "llm.sqlite")])
    return code, out


def test_default_run_writes_every_output(demo_run):
    code, out = demo_run
    assert code == 0
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "report.html",
                 "run.json", "judge/judgments.jsonl", "judge/run.json"):
        assert (out / name).is_file(), name
    assert list((out / "lm_eval").rglob("results_*.json"))
    (samples,) = (out / "lm_eval").rglob("samples_csconv_reply_*.jsonl")
    turns = len(samples.read_text().splitlines())
    assert turns >= 5
    rows = [json.loads(line) for line in (out / "judge/judgments.jsonl").read_text().splitlines()]
    models = [r for r in rows if not r["model"].startswith("control:")]
    assert len(models) == 3 * turns  # joint mode: one row per dimension
    # beside the model, the default controls on one seeded turn of the run's one dialogue
    controls = [r for r in rows if r["model"].startswith("control:")]
    assert {r["model"] for r in controls} == {
        "control:gold", "control:mismatch", "control:padded"}
    assert len({r["item_id"] for r in controls}) == 1 and len(controls) == 3 * 3
    assert {row["variant"] for row in rows} == {"compact"}
    assert all(row["embedded"] for row in rows)


def test_default_run_checks_its_judge_and_reports_it(demo_run):
    _, out = demo_run
    run = json.loads((out / "run.json").read_text())
    (judging,) = [s for s in run["steps"] if s["step"] == "judging"]
    assert judging["controls"]["kinds"] == ["gold", "mismatch", "padded"]
    assert judging["controls"]["n_dialogues"] == 1
    assert run["judge_check"]["findings"]
    assert (out / "judge_check.json").is_file() and (out / "judge_check.md").is_file()
    html = (out / "report.html").read_text()
    assert 'id="judge-check"' in html and 'id="controls-table"' in html
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["models"] and not any(m["model"].startswith("control:") for m in board["models"])


def test_default_run_is_labelled_as_the_embedded_demo(demo_run):
    _, out = demo_run
    assert "not a quality estimate" in (out / "report.html").read_text()
    run = json.loads((out / "run.json").read_text())
    assert "not a quality estimate" in run["label"]
    assert run["embedded_model"]["workers"] == local.LocalSettings().workers
    assert run["embedded_model"]["max_tokens"] == EMBEDDED_MAX_TOKENS
    assert [s["variant"] for s in run["steps"] if s["step"] == "judging"] == ["compact"]
    assert run["seconds"] >= sum(s["seconds"] for s in run["steps"]) > 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert "smollm2" in json.dumps(board)


def test_server_is_stopped_after_the_run(demo_run):
    assert local_servers() == []


def test_rerun_reuses_the_cache(demo_run, capsys):
    code, out = demo_run
    before = (out / "judge/judgments.jsonl").read_text()
    # the same cache (tests get a fresh HOME each): every reply and verdict is reused
    assert main(["run", "--limit", "1", "--rounds", "50", "--no-progress",
                 "--out", str(out), "--cache", str(out.parent / "cache" / "llm.sqlite")]) == 0
    assert (out / "judge/judgments.jsonl").read_text() == before
    assert local_servers() == []


def test_a_failing_step_names_itself_and_stops_the_server(tmp_path, monkeypatch, capsys):
    from csc_harness import pipeline

    def broken(*args, **kwargs):
        assert local_servers(), "the server should be up during the step"
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(pipeline, "reference_candidates", broken)
    code = main(["run", "--limit", "1", "--no-progress", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "step 1 (candidate replies, reference context" in err
    assert "backend exploded" in err and "re-run the same command to resume" in err
    assert local_servers() == []
