"""Names that reach CSV and Markdown are escaped for those formats (issue 10 §2): formula
prefixes neutralised in CSV cells (OWASP CSV injection), pipes and line breaks escaped and
raw HTML shown as text in Markdown; the report's CSP allows no inline script."""

from __future__ import annotations

import csv
import io
import re

import pytest

from csc_harness.analysis import leaderboard, load_judgments
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.report import csv_cell, md_cell, write_leaderboard

EVIL = '=HYPERLINK("http://x")|<img src=x onerror=alert(1)>\nrow'
EVIL_JUDGE = "+judge|<script>\r"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("esc")
    rows = list(synthetic_rows(("plain-model", EVIL), dialogues=5, turns=2,
                               judges=("judge-x", EVIL_JUDGE), seed=4))
    write_jsonl(iter(rows), folder / "j" / "judgments.jsonl")
    board = leaderboard(load_judgments([folder / "j"]), rounds=30)
    paths = write_leaderboard(board, folder / "out")
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("=1+1", "'=1+1", id="equals"),
    pytest.param("+1", "'+1", id="plus"),
    pytest.param("-cmd", "'-cmd", id="minus"),
    pytest.param("@SUM(A1)", "'@SUM(A1)", id="at"),
    pytest.param("\tx", "'\tx", id="tab"),
    pytest.param("\rx", "'\rx", id="cr"),
    pytest.param("model-a", "model-a", id="plain"),
    pytest.param(-0.5, -0.5, id="negative-number"),
])
def test_csv_cells_starting_a_formula_get_a_quote(value, expected):
    assert csv_cell(value) == expected


def test_leaderboard_csv_reads_back_with_the_formula_neutralised(files):
    rows = list(csv.DictReader(io.StringIO(files["leaderboard.csv"])))
    [evil] = [r for r in rows if "HYPERLINK" in r["model"]]
    assert evil["model"] == "'" + EVIL
    header = next(csv.reader(io.StringIO(files["leaderboard.csv"])))
    assert not any(h.startswith(("=", "+", "-", "@")) for h in header)
    for row in csv.DictReader(io.StringIO(files["breakdowns.csv"])):
        assert not any(str(v).startswith(("=", "+", "@")) for v in row.values())


def test_markdown_tables_keep_their_columns_and_show_html_as_text(files):
    md = files["leaderboard.md"]
    assert "<img" not in md and "<script" not in md
    assert md_cell(EVIL) in md and "&lt;img src=x onerror=alert(1)&gt; row" in md
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"\|(-+\|)+", line):
            width = line.count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                cells = re.sub(r"\\\\|\\\|", "", lines[j])
                assert cells.count("|") == width, lines[j]
                j += 1


def test_report_csp_needs_no_inline_script(files):
    html = files["report.html"]
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)
    assert "'unsafe-inline'" not in script_src and script_src.startswith("'sha256-")
    assert "<img src=x" not in html
