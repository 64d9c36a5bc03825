"""Report files: markdown, CSV and JSON contents, escaping, self-containment, re-rendering."""

from __future__ import annotations

import csv
import io
import json
import re

import pandas as pd
import pytest

from csc_harness.analysis import compare_variants, correlate, leaderboard, load_judgments
from csc_harness.analysis.synthetic import absolute_row, synthetic_rows, write_jsonl
from csc_harness.report import (
    correlation_markdown,
    md_cell,
    report_html,
    write_ablation,
    write_correlation,
    write_leaderboard,
)

TRICKY = "evil<b>|&model"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rep")
    rows = list(synthetic_rows(("gpt-4o-mini", TRICKY), dialogues=6, turns=3,
                               judges=("gpt-4o", "claude-3-5-sonnet"), seed=8))
    rows += [dict(r, model="smollm2", embedded=True) for r in rows if r["model"] == TRICKY]
    write_jsonl(iter(rows), folder / "j" / "judgments.jsonl")
    metrics = [{"model": "gpt-4o-mini", "setting": "reference", "source": "r.json",
                "tokenization": {"bleu": "sacrebleu corpus BLEU, tokenizer 'zh'"},
                "metrics": {"bleu2": 8.13, "bleu4": 2.97, "rougeL": 4.12, "strategy_acc": 42.6}},
               {"model": "gpt-4o-mini", "setting": "generated", "source": "m.json",
                "metrics": {"bleu2": 6.41, "bleu4": 2.07, "rougeL": 2.22, "strategy_acc": 36.3}}]
    board = leaderboard(load_judgments([folder / "j"]), metrics, rounds=50)
    paths = write_leaderboard(board, folder / "out")
    return board, {p.name: p.read_text(encoding="utf-8") for p in paths}


def test_markdown_table_has_dimensions_metrics_and_every_model(written):
    board, files = written
    md = files["leaderboard.md"]
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    for col in ("Empathy", "Overall", "ref B-2", "ref ACC", "gen B-4", "invalid"):
        assert col in header
    assert "| 8.13 |" in md and "| 36.30 |" in md
    assert "- bleu: sacrebleu corpus BLEU, tokenizer 'zh'" in md
    for m in board["models"]:
        assert md_cell(m["model"]) in md


def test_markdown_labels_embedded_results_and_escapes_pipes(written):
    md = written[1]["leaderboard.md"]
    assert "smollm2 (embedded demo model: not a quality estimate)" in md
    assert "evil&lt;b&gt;\\|&amp;model" in md and "<b>" not in md


def test_csv_has_one_row_per_model_with_judge_dimension_columns(written):
    board, files = written
    rows = list(csv.DictReader(io.StringIO(files["leaderboard.csv"])))
    assert [r["model"] for r in rows] == [m["model"] for m in board["models"]]
    assert float(rows[0]["panel:overall:mean"]) == pytest.approx(
        board["models"][0]["scores"]["panel"]["overall"]["mean"])
    assert rows[0]["reference:bleu2"] == "8.13"


def test_breakdowns_csv_is_long_format(written):
    frame = pd.read_csv(io.StringIO(written[1]["breakdowns.csv"]))
    assert set(frame["by"]) == {"stage", "strategy", "topic", "language"}
    assert {"judge", "group", "model", "dimension", "mean", "ci_low", "ci_high"} <= set(frame)


def test_json_round_trips_and_the_html_re_renders_from_it(written):
    board, files = written
    assert json.loads(files["leaderboard.json"]) == board
    assert report_html(json.loads(files["leaderboard.json"])) == files["report.html"]


def test_html_is_self_contained_and_escapes_model_names(written):
    html = written[1]["report.html"]
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # a namespace name, never fetched
    assert "<script src" not in html and "<link" not in html and "@import" not in html
    assert "default-src 'none'" in html
    assert "evil&lt;b&gt;|&amp;model" in html and TRICKY not in html
    assert html.count("<svg") >= 5
    assert "embedded demo model: not a quality estimate" in html


def test_correlation_files_and_undefined_values_in_the_table(tmp_path):
    rows = [absolute_row(item_id=f"d{i}:1", conversation_id=f"d{i}", score=4.0)
            for i in range(4)]
    write_jsonl(iter(rows), tmp_path / "j" / "judgments.jsonl")
    human = pd.DataFrame([(f"d{i}:1", "model-a", "empathy", "r1", float(i + 1))
                          for i in range(4)],
                         columns=["item_id", "model", "dimension", "rater", "score"])
    result = correlate(load_judgments([tmp_path / "j"]), human, rounds=20)
    paths = write_correlation(result, tmp_path / "out")
    assert json.loads(paths[0].read_text()) == result
    md = correlation_markdown(result)
    assert "undefined (judge scores are constant" in md
    assert "– (fewer than 2 raters)" in md


def test_ablation_files(tmp_path):
    base = list(synthetic_rows(("a", "b", "c"), dialogues=5, turns=2, dimensions=("empathy",),
                               seed=1))
    rows = base + [dict(r, variant="v2") for r in base]
    write_jsonl(iter(rows), tmp_path / "j" / "judgments.jsonl")
    human = pd.DataFrame([(r["item_id"], r["model"], "empathy", "r1", 3.0 + (i % 3))
                          for i, r in enumerate(base)],
                         columns=["item_id", "model", "dimension", "rater", "score"])
    result = compare_variants(load_judgments([tmp_path / "j"]), human, rounds=20)
    paths = {p.name: p for p in write_ablation(result, tmp_path / "out")}
    assert set(paths) == {"ablation.json", "ablation.md", "ablation.svg"}
    assert "| v2 |" in paths["ablation.md"].read_text()
    assert paths["ablation.svg"].read_text().startswith("<svg")
