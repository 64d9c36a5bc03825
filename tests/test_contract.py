"""One contract: rows the judge writes are read by the analysis, every kind, none merged or
dropped; rows trace to their cache entry."""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_judge_support import candidates, fake_judge, read_rows, run

from csc_harness import contract
from csc_harness.analysis.rows import load_judgments
from csc_harness.judge import JudgeConfig
from csc_harness.llm import StubServer


def config(stub, **kwargs) -> JudgeConfig:
    kwargs.setdefault("judges", ("openai/judge",))
    return JudgeConfig(api_base=stub.base_url, **kwargs)


KINDS = [
    pytest.param({}, id="absolute"),
    pytest.param({"mode": "joint"}, id="absolute-joint"),
    pytest.param({"pairwise": True}, id="pairwise"),
    pytest.param({"judges": ("openai/judge-a", "openai/judge-b")}, id="panel"),
    pytest.param({"samples": 3}, id="samples"),
    pytest.param({"reference_guided": True}, id="reference-guided"),
]


@pytest.mark.parametrize("options", KINDS)
def test_every_row_the_judge_writes_is_read_once_by_the_analysis(tmp_path, options):
    with StubServer(fake_judge) as stub:
        result = run(config(stub, **options), candidates(3), tmp_path / "out")
    assert result.exit_code == 0
    rows = read_rows(tmp_path / "out")
    keys = {contract.row_key(r) for r in rows}
    assert len(keys) == len(rows)
    loaded = load_judgments([tmp_path / "out"])
    table = loaded.pairwise if options.get("pairwise") else loaded.absolute
    assert len(table) == len(rows)
    assert len(loaded.absolute) + len(loaded.pairwise) == len(rows)
    for row in rows:
        fields = contract.PAIRWISE_FIELDS if row["kind"] == "pairwise" else contract.ROW_FIELDS
        assert tuple(row) == fields
        assert set(row) <= set(contract.FIELD_TYPES)
        assert row["input_id"] and row["cache_key"]


def test_pairwise_rows_that_differ_only_in_mode_or_guidance_stay_apart(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub, pairwise=True), candidates(2), tmp_path / "out")
        run(config(stub, pairwise=True, reference_guided=True), candidates(2), tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert len(load_judgments([tmp_path / "out"]).pairwise) == len(rows) == 2 * 3 * 2 * 2


def test_each_row_names_the_cache_entry_holding_its_prompt_and_answer(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with StubServer(fake_judge) as stub:
        run(config(stub), candidates(1), tmp_path / "out", cache_path=cache)
    rows = read_rows(tmp_path / "out")
    with sqlite3.connect(cache) as db:
        stored = dict(db.execute("SELECT key, response FROM responses"))
    for row in rows:
        assert row["cache_key"] in stored
        assert json.loads(stored[row["cache_key"]])["text"] == row["raw"]


def test_run_json_carries_the_contract_keys(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub), candidates(1), tmp_path / "out")
    info = json.loads((tmp_path / "out" / contract.RUN_FILE).read_text())
    assert set(info) <= set(contract.RUN_KEYS)
    assert {"started_at", "updated_at", "status"} <= set(info)
