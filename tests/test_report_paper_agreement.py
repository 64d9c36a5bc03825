"""The paper's reported rows (only on the full CSConv, labelled, never ranked) and panel
agreement in leaderboard.json, leaderboard.md and report.html."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from csc_harness.analysis import leaderboard, load_judgments
from csc_harness.analysis.reference import paper_section, paper_table
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.cli import main
from csc_harness.data import CSCONV_COUNTS
from csc_harness.report import leaderboard_csv, leaderboard_markdown, report_html

LABEL = "reported by the paper on the full CSConv"


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("panel")
    rows = list(synthetic_rows(("model-a", "model-b"), dialogues=8, turns=3,
                               judges=("judge-x", "judge-y"), seed=5))
    write_jsonl(iter(rows), folder / "j" / "judgments.jsonl")
    return folder, load_judgments([folder / "j"])


def test_paper_table_has_both_settings_for_every_model_and_cites_the_paper():
    table = paper_table()
    assert table["label"] == LABEL and "2508.04423" in table["citation"]
    assert len(table["rows"]) == 11
    gpt = table["rows"][0]
    assert gpt["model"] == "GPT-4o"
    assert gpt["reference"]["bleu2"] == 8.13 and gpt["generated"]["strategy_acc"] == 36.29


@pytest.mark.parametrize(("counts", "measured", "why"), [
    pytest.param(None, [], "unknown", id="no-data"),
    pytest.param({"dialogues": 3, "utterances": 30, "supporter_turns": 15}, [], "not the full",
                 id="sample"),
    pytest.param(dict(CSCONV_COUNTS), [100], "100 of the 1,855", id="subset-measured"),
])
def test_paper_rows_are_hidden_unless_the_data_is_the_full_csconv(counts, measured, why):
    section = paper_section(counts, measured)
    assert section["shown"] is False and "rows" not in section
    assert section["reason"].startswith("paper rows hidden") and why in section["reason"]


def test_paper_rows_sit_apart_from_the_ranked_models(judged):
    _, judgments = judged
    board = leaderboard(judgments, rounds=20, paper_rows=True,
                        data_counts=dict(CSCONV_COUNTS))
    assert board["paper"]["shown"] and board["paper"]["label"] == LABEL
    assert {m["model"] for m in board["models"]} == {"model-a", "model-b"}
    assert "GPT-4o" not in leaderboard_csv(board)
    md = leaderboard_markdown(board)
    assert "## Reported by the paper on the full CSConv" in md and "| GPT-4o |" in md
    html = report_html(board)
    assert 'id="paper-table"' in html and "Qwen2.5-72B-Instruct + RoleCS" in html
    assert json.loads(json.dumps(board))["paper"]["rows"][0]["model"] == "GPT-4o"


def test_without_the_flag_there_is_no_paper_section(judged):
    _, judgments = judged
    board = leaderboard(judgments, rounds=20)
    assert board["paper"] is None
    assert "paper" not in leaderboard_markdown(board).lower()


def test_panel_agreement_matches_a_direct_computation(judged):
    _, judgments = judged
    board = leaderboard(judgments, rounds=20)
    absolute = judgments.absolute
    ok = absolute[absolute["status"] == "ok"]
    for rec in board["agreement"]:
        part = ok[ok["dimension"] == rec["dimension"]].astype({"judge": "object",
                                                               "model": "object",
                                                               "item_id": "object"})
        table = part.pivot_table(index=["model", "item_id"], columns="judge",
                                 values="score", aggfunc="mean").dropna()
        x, y = table[rec["judges"][0]].to_numpy(), table[rec["judges"][1]].to_numpy()
        assert rec["n"] == len(x)
        assert rec["exact"] == pytest.approx(np.mean(np.round(x) == np.round(y)))
        assert rec["within_1"] == pytest.approx(np.mean(np.abs(x - y) <= 1))
        assert rec["spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert {r["dimension"] for r in board["agreement"]} == set(board["settings"]["dimensions"]) - {"overall"}
    html = report_html(board)
    assert 'id="agreement-table"' in html and "judge-x vs judge-y" in html
    assert "## Agreement between judges" in leaderboard_markdown(board)


def test_leaderboard_cli_paper_rows_on_the_sample_prints_why_they_are_hidden(judged, capsys):
    folder, _ = judged
    code = main(["leaderboard", "--judgments", str(folder / "j"), "--out",
                 str(folder / "out"), "--rounds", "20", "--paper-rows", "--no-items"])
    assert code == 0
    out = capsys.readouterr().out
    assert "note: paper rows hidden: the data is not the full CSConv" in out
    board = json.loads((folder / "out" / "leaderboard.json").read_text(encoding="utf-8"))
    assert board["paper"]["shown"] is False
    assert "paper rows hidden" in (folder / "out" / "report.html").read_text(encoding="utf-8")
