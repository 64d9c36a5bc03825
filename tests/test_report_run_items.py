"""`csc-harness run`'s leaderboard step writes the same report as `leaderboard`: the items
view, metric intervals and (on request) the paper-rows section."""

from __future__ import annotations

import json

from test_analysis_automatic import items, write_lm_eval

from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.pipeline import RunOptions, _leaderboard


def test_run_leaderboard_step_writes_the_items_view_and_metric_intervals(tmp_path):
    out = tmp_path / "out"
    write_jsonl(synthetic_rows(("org/m",), dialogues=3, turns=2, seed=1),
                out / "judge" / "judgments.jsonl")
    write_lm_eval(out / "lm_eval" / "org__m", items())
    _leaderboard(RunOptions(out=str(out), rounds=20, paper_rows=True), [out / "lm_eval"])
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="items-data"' in html and 'id="items-list"' in html
    assert 'id="paper-hidden"' in html
    board = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    assert board["models"][0]["metric_intervals"]["reference"]["bleu2"]["ci_low"] is not None
