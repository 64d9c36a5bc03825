"""`csc-harness leaderboard` and `csc-harness correlate` end to end through cli.main."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from csc_harness.analysis.synthetic import absolute_row, synthetic_rows, write_jsonl
from csc_harness.cli import main


@pytest.fixture()
def run_dir(tmp_path):
    rows = synthetic_rows(("org/alpha", "beta"), dialogues=8, turns=3, seed=5)
    write_jsonl(rows, tmp_path / "judge" / "judgments.jsonl")
    (tmp_path / "judge" / "run.json").write_text(json.dumps({"versions": {"x": "1"}}))
    lm = tmp_path / "lm" / "org__alpha"
    lm.mkdir(parents=True)
    (lm / "results_2026-01-01T00-00-00.json").write_text(json.dumps({
        "model_name": "org/alpha",
        "results": {"csconv_reply": {"bleu2,none": 8.5, "bleu4,none": 3.1, "rougeL,none": 5.0,
                                     "strategy_acc,none": 41.0}}}))
    return tmp_path


def test_leaderboard_writes_every_file_and_prints_the_ranking(run_dir, capsys):
    out = run_dir / "out"
    code = main(["leaderboard", "--judgments", str(run_dir / "judge"), "--lm-eval",
                 str(run_dir / "lm"), "--out", str(out), "--rounds", "50"])
    assert code == 0
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "report.html",
                 "breakdowns.csv"):
        assert (out / name).stat().st_size > 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert [m["model"] for m in board["models"]] == ["org/alpha", "beta"]
    assert board["models"][0]["metrics"]["reference"]["bleu2"] == 8.5
    printed = capsys.readouterr().out
    assert "org/alpha" in printed and "wrote" in printed


@pytest.mark.parametrize(("extra", "message"), [
    pytest.param(["--rounds", "0"], "--rounds must be at least 1", id="rounds"),
    pytest.param(["--confidence", "1.5"], "--confidence must be between", id="confidence"),
    pytest.param(["--by", "stage,mood"], "unknown breakdown 'mood'", id="breakdown"),
    pytest.param(["--variant", "v9"], "no judgments for variant 'v9'", id="variant"),
])
def test_bad_options_exit_2_with_one_line(run_dir, capsys, extra, message):
    code = main(["leaderboard", "--judgments", str(run_dir / "judge"), "--out",
                 str(run_dir / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_a_malformed_judgment_line_exits_2_naming_file_and_line(tmp_path, capsys):
    path = tmp_path / "judgments.jsonl"
    path.write_text(json.dumps(absolute_row()) + "\n" + json.dumps(absolute_row(score="x")) + "\n")
    code = main(["leaderboard", "--judgments", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}, line 2, field 'score'" in err and "Traceback" not in err


def test_correlate_writes_json_and_markdown_and_prints_the_table(run_dir, capsys):
    ratings = run_dir / "human.csv"
    board_rows = [json.loads(x) for x in
                  (run_dir / "judge" / "judgments.jsonl").read_text().splitlines()]
    lines = ["item_id,model,dimension,rater,score"]
    for i, r in enumerate(r for r in board_rows if r["status"] == "ok"):
        for rater, shift in (("ann", 0), ("bob", (i % 3) - 1)):
            lines.append(f"{r['item_id']},{r['model']},{r['dimension']},{rater},"
                         f"{min(5, max(1, r['score'] + shift))}")
    ratings.write_text("\n".join(lines) + "\n")
    out = run_dir / "corr"
    code = main(["correlate", "--human", str(ratings), "--judgments", str(run_dir / "judge"),
                 "--out", str(out), "--rounds", "50", "--level", "item"])
    assert code == 0
    result = json.loads((out / "correlation.json").read_text())
    assert set(result["item"]["judge-x"]) == {"strategy_adherence", "empathy",
                                              "problem_resolution"}
    assert result["system"] is None and "not requested" in result["system_reason"]
    assert (out / "correlation.md").read_text().startswith("# Judge-human agreement")
    assert "| judge-x | Empathy |" in capsys.readouterr().out


def test_correlate_with_a_missing_ratings_file_exits_2(run_dir, capsys):
    code = main(["correlate", "--human", str(run_dir / "nope.csv"), "--judgments",
                 str(run_dir / "judge"), "--out", str(run_dir / "c")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_help_imports_no_analysis_dependencies():
    code = ("import sys, argparse; from csc_harness._cli import leaderboard, correlate; "
            "sub = argparse.ArgumentParser().add_subparsers(); "
            "leaderboard.register(sub); correlate.register(sub); "
            "heavy = [m for m in ('pandas', 'scipy', 'numpy', 'jinja2') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_analysis_never_imports_the_provider_or_judging_layers():
    code = ("import sys, csc_harness.analysis, csc_harness.report; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'litellm' "
            "or m.startswith(('csc_harness.llm', 'csc_harness.judge'))]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
