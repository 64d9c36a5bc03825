"""Control replies in the main job: judged beside the models, shown apart as reference rows,
checked in every leaderboard output, and measured per cell in ablations."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from csc_harness.analysis import compare_variants, leaderboard, load_judgments
from csc_harness.cli import main
from csc_harness.data import load_examples
from csc_harness.errors import UserError
from csc_harness.judge import Candidate, with_controls
from csc_harness.pipeline import EMBEDDED_CONTROL_DIALOGUES, RunOptions, _with_controls
from csc_harness.report import leaderboard_csv, leaderboard_markdown, report_html

DIMS = ("empathy", "problem_resolution", "strategy_adherence")
SCORES = {"model-a": 4.0, "model-b": 3.0, "control:gold": 5.0}


def rows(scorer, *, models=("model-a", "model-b"), kinds=("gold", "mismatch", "padded"),
         dialogues: int = 8, turns: int = 3, control_dialogues: int | None = None,
         variant: str = "default"):
    """Judgment rows: models on every item, controls on the first ``control_dialogues``."""
    out = []
    for d in range(dialogues):
        for t in range(turns):
            names = list(models)
            if control_dialogues is None or d < control_dialogues:
                names += [f"control:{k}" for k in kinds]
            for model in names:
                for dim in DIMS:
                    out.append({"item_id": f"c{d}:{t}", "conversation_id": f"c{d}",
                                "model": model, "judge": "judge-x", "dimension": dim,
                                "status": "ok", "score": scorer(model, dim, d, t),
                                "scale_min": 1, "scale_max": 5, "variant": variant})
    return out


def write(folder: Path, records) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records),
                                            encoding="utf-8")
    return folder


def good(model, dim, d, t):
    return SCORES.get(model, 1.0)


def constant(model, dim, d, t):
    return 3.0 if model.startswith("control:") else SCORES[model]


@pytest.fixture
def board(tmp_path):
    return leaderboard(load_judgments([write(tmp_path, rows(good, control_dialogues=5))]),
                       rounds=100)


# --------------------------------------------------------------------------- candidates


def test_controls_cover_a_seeded_subset_of_dialogues_and_follow_their_items_replies():
    items = load_examples()[:60]
    cands = [Candidate(ex, "model-a", "a reply", "IP") for ex in items]
    merged, cover = with_controls(cands, ("gold", "mismatch", "padded"), dialogues=2)
    controls = [c for c in merged if c.model.startswith("control:")]
    conversations = {c.item.conversation_id for c in controls}
    assert len(conversations) == cover["n_dialogues"] == 2
    assert cover["of_dialogues"] == len({ex.conversation_id for ex in items})
    assert cover["n_items"] == len({c.item.item_id for c in controls})
    assert {c.model for c in controls} == {"control:gold", "control:mismatch", "control:padded"}
    for i, cand in enumerate(merged):  # each control comes right after its item's reply
        if cand.model.startswith("control:"):
            assert merged[i - 1].item.item_id == cand.item.item_id
    assert with_controls(cands, ("gold", "mismatch", "padded"), dialogues=2)[0] == merged


def test_candidates_outside_the_data_get_no_controls_and_no_error():
    assert with_controls([], ("gold", "mismatch"), dialogues=31, turns=1) == (
        [], {"n_items": 0, "n_dialogues": 0, "of_items": 0, "of_dialogues": 0})


def test_no_kinds_leaves_the_candidates_as_they_are():
    cands = [Candidate(ex, "model-a", "a reply", "IP") for ex in load_examples()[:5]]
    merged, cover = with_controls(cands, (), dialogues=3)
    assert merged == cands and cover["n_items"] == 0


@pytest.mark.parametrize(("controls", "dialogues", "local", "kinds", "n_dialogues", "turns"), [
    pytest.param(None, None, True, 3, EMBEDDED_CONTROL_DIALOGUES, 1, id="embedded-default"),
    pytest.param(None, 5, True, 3, 5, 1, id="embedded-chosen"),
    pytest.param(("gold", "generic"), 2, False, 2, 2, None, id="chosen"),
    pytest.param(None, 0, False, 3, 44, None, id="all-dialogues"),
    pytest.param(None, 0, True, 3, 44, 1, id="embedded-all-dialogues"),
])
def test_the_run_judges_controls_by_default_on_a_documented_subset(controls, dialogues, local,
                                                                    kinds, n_dialogues, turns):
    items = load_examples()
    cands = [Candidate(ex, "model-a", "a reply", "IP") for ex in items]
    opts = RunOptions(out="unused", controls=controls, control_dialogues=dialogues)
    merged, info = _with_controls(opts, cands, local)
    assert len(info["kinds"]) == kinds and info["n_dialogues"] == n_dialogues
    chosen = {c.item.item_id for c in merged if c.model.startswith("control:")}
    whole = sum(1 for ex in items if ex.conversation_id in
                {c.item.conversation_id for c in merged if c.model.startswith("control:")})
    assert len(chosen) == info["n_items"] == (n_dialogues if turns else whole)


def test_controls_none_skips_them():
    cands = [Candidate(ex, "model-a", "a reply", "IP") for ex in load_examples()[:5]]
    assert _with_controls(RunOptions(out="x", controls=()), cands, True) == (cands, None)


@pytest.mark.parametrize("value", ["0", "-1", "some"])
def test_a_bad_control_dialogues_value_is_a_one_line_error(value, tmp_path, capsys):
    assert main(["run", "--control-dialogues", value, "--out", str(tmp_path)]) == 2
    assert "--control-dialogues" in capsys.readouterr().err


# --------------------------------------------------------------------------- leaderboard


def test_controls_are_reference_rows_never_ranked_or_compared(board):
    assert [m["model"] for m in board["models"]] == ["model-a", "model-b"]
    assert [(c["model"], c["rank"]) for c in board["controls"]] == [
        ("control:gold", None), ("control:mismatch", None), ("control:padded", None)]
    compared = {c["higher"] for c in board["comparisons"]} | {
        c["lower"] for c in board["comparisons"]}
    assert compared == {"model-a", "model-b"}
    for fields in board["breakdowns"].values():
        for data in fields.values():
            assert all(not r["model"].startswith("control:") for r in data["rows"])
    assert all(not b.get("model", "").startswith("control:")
               for b in board["bias"]["length"])


def test_the_leaderboard_reports_the_check_and_what_the_controls_covered(board):
    check = board["judge_check"]
    assert check["judges"]["judge-x"]["pass"] is True
    assert check["coverage"] == {"n_items": 15, "n_dialogues": 5, "of_items": 24,
                                 "of_dialogues": 8}
    assert "passes the check" in check["findings"][0]


def test_no_check_without_gold_and_another_control(tmp_path):
    only_gold = rows(good, kinds=("gold",))
    assert leaderboard(load_judgments([write(tmp_path, only_gold)]),
                       rounds=50)["judge_check"] is None


def test_markdown_csv_and_json_keep_controls_apart(board, tmp_path):
    md = leaderboard_markdown(board)
    table, rest = md.split("### Reference rows", 1)
    assert "control:" not in table.split("\n## ")[0].split("| # | model |")[1]
    assert "control:gold" in rest and "## Can this judge be trusted?" in rest
    assert "5 of 8 dialogues" in rest
    reader = list(csv.DictReader(io.StringIO(leaderboard_csv(board))))
    assert [(r["model"], r["rank"], r["reference"]) for r in reader][-3:] == [
        ("control:gold", "", "control"), ("control:mismatch", "", "control"),
        ("control:padded", "", "control")]
    assert reader[0]["reference"] == ""
    json.dumps(board, allow_nan=False)


def test_a_failing_judge_is_the_finding_of_the_report(tmp_path):
    failing = leaderboard(load_judgments([write(tmp_path, rows(constant))]), rounds=100)
    check = failing["judge_check"]
    assert check["judges"]["judge-x"]["pass"] is False
    assert "FAILS the check on every dimension" in check["findings"][0]
    html = report_html(failing)
    assert 'id="judge-check-banner"' in html and 'id="judge-check"' in html
    assert "Finding of this run" in html and 'id="controls-table"' in html
    assert html.index('id="judge-check-banner"') < html.index('id="leaderboard"')
    ranked = html.split('id="leaderboard"', 1)[1].split("</table>", 1)[0]
    assert "control:" not in ranked
    assert "cannot tell a reply from another conversation" in html
    md = leaderboard_markdown(failing)
    assert md.index("Finding of this run") < md.index("| # | model |")


def test_leaderboard_cli_writes_the_check_beside_the_board(tmp_path, capsys):
    folder = write(tmp_path / "j", rows(good))
    assert main(["leaderboard", "--judgments", str(folder), "--rounds", "50", "--no-items",
                 "--out", str(tmp_path / "out")]) == 0
    check = json.loads((tmp_path / "out" / "judge_check.json").read_text())
    assert check["judges"]["judge-x"]["pass"] is True
    assert "Can this judge be trusted?" in (tmp_path / "out" / "judge_check.md").read_text()
    assert "Can this judge be trusted?" in (tmp_path / "out" / "report.html").read_text()


# --------------------------------------------------------------------------- ablation


def ablation_rows(tmp_path: Path):
    """Cell 'sharp' scores gold high; cell 'flat' is constant on controls; cell 'mixed'
    separates only on half the dialogues."""
    def mixed(model, dim, d, t):
        return good(model, dim, d, t) if d % 2 else constant(model, dim, d, t)

    records = (rows(good, variant="sharp") + rows(constant, variant="flat")
               + rows(mixed, variant="mixed"))
    return load_judgments([write(tmp_path, records)])


def test_without_humans_cells_are_ranked_by_discrimination(tmp_path):
    result = compare_variants(ablation_rows(tmp_path), baseline="flat", rounds=100)
    assert result["ranked_by"] == "discrimination"
    assert result["ranking"] == ["sharp", "mixed", "flat"]
    by = {v["variant"]: v for v in result["variants"]}
    assert [by[v]["rank"] for v in ("sharp", "mixed", "flat")] == [1, 2, 3]
    assert by["flat"]["discrimination"]["dimensions"]["empathy"]["discrimination"] == 0.5
    assert by["sharp"]["discrimination"]["pass"] is True
    assert by["flat"]["leaderboard"]["n_models"] == 2  # controls are no model
    from csc_harness.report import render

    md = render("ablation.md.j2", result=result)
    section = md.split("## Discrimination", 1)[1]
    assert "ranked by discrimination" in section
    assert section.index("| 1 | sharp") < section.index("| 2 | mixed") < section.index(
        "| 3 | flat")


def test_with_humans_discrimination_sits_next_to_the_human_correlation(tmp_path):
    import pandas as pd

    judgments = ablation_rows(tmp_path)
    human = pd.DataFrame([(f"c{d}:{t}", m, "empathy", r, SCORES[m] + (t % 2))
                          for d in range(8) for t in range(3) for m in ("model-a", "model-b")
                          for r in ("r1", "r2")],
                         columns=["item_id", "model", "dimension", "rater", "score"])
    result = compare_variants(judgments, human, baseline="flat", rounds=100)
    assert result["ranked_by"] is None and result["ranking"] is None
    assert all(v["discrimination"] for v in result["variants"])
    from csc_harness.report import render

    md = render("ablation.md.j2", result=result).split("## Discrimination", 1)[1]
    assert "Empathy discrimination | Empathy vs humans" in md


def test_ablation_config_reads_controls_and_refuses_unknown_kinds(tmp_path):
    from csc_harness.ablate import load_ablation

    base = ("candidates: c.jsonl\njudges: [openai/gpt-4o-mini]\n"
            "grid:\n  mode: [separate, joint]\n")
    (tmp_path / "a.yaml").write_text(base + "controls: [generic]\ncontrol_dialogues: 3\n")
    config = load_ablation(tmp_path / "a.yaml")
    assert config.controls == ("gold", "generic") and config.control_dialogues == 3
    (tmp_path / "b.yaml").write_text(base + "controls: none\n")
    assert load_ablation(tmp_path / "b.yaml").controls == ()
    (tmp_path / "c.yaml").write_text(base + "controls: [shouting]\n")
    with pytest.raises(UserError, match="unknown control 'shouting'"):
        load_ablation(tmp_path / "c.yaml")


def test_a_check_on_one_dialogue_has_no_interval_and_says_why(tmp_path):
    board = leaderboard(load_judgments([write(tmp_path, rows(good, dialogues=1))]), rounds=50)
    dims = board["judge_check"]["judges"]["judge-x"]["dimensions"]
    assert dims["empathy"]["ci_low"] is None and dims["empathy"]["pass"] is False
    assert "one dialogue: no interval" in dims["empathy"]["verdict"]
    assert "Can this judge be trusted?" in report_html(board)
