"""``csc-harness ablate`` end to end: a 2x2 grid judged by the scripted fake judge on a
loopback stub (no network), compared with human ratings made up here, then re-run for free.

Uses the judge suite's fake judge (tests/test_judge_support.py): its scores depend only on
the reply, the dimension and the judge, so runs are deterministic.
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from csc_harness.ablate import Cell, load_cell_rows
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.cli import main
from csc_harness.llm import StubReply, StubServer

support = pytest.importorskip("test_judge_support",
                              reason="the judge suite's fake judge (tests/test_judge_support.py)")
conftest = pytest.importorskip("conftest", reason="the suite's network guard")

MODELS = ("model-full", "model-half", "model-terse")
DIMENSIONS = ("strategy_adherence", "empathy", "problem_resolution")
CELLS = ["template=default,mode=separate", "template=default,mode=joint",
         "template=scale10,mode=separate", "template=scale10,mode=joint"]
GRID = "grid:\n  template: [default, scale10]\n  mode: [separate, joint]\n"


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """The suite's guards for module-scoped fixtures (conftest's are per test)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", conftest._guarded_connect)
        mp.setattr(socket.socket, "connect_ex", conftest._guarded_connect_ex)
        for var in ("HOME", "XDG_CACHE_HOME", "CSC_HARNESS_CACHE"):
            mp.setenv(var, str(home / var.lower()))
        mp.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "CSCONV_DATA"):
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Candidates of three models on six items, and two raters who mostly agree with the
    fake judge's 1-5 separate-mode score (so correlations are defined and positive)."""
    folder = tmp_path_factory.mktemp("inputs")
    rows, ratings = [], []
    rng = np.random.default_rng(3)
    for ex in support.examples(6):
        for i, model in enumerate(MODELS):
            reply = ex.reply[: max(4, len(ex.reply) // (1 + 2 * i))]
            rows.append({"item_id": ex.item_id, "model": model, "reply": reply})
            judged = support._score(reply, "single", "openai/gpt-4o-mini", 5)
            for dim in DIMENSIONS:
                for rater in ("r1", "r2"):
                    score = int(np.clip(judged + rng.integers(-1, 2), 1, 5))
                    ratings.append([ex.item_id, model, dim, rater, score])
    support.write_jsonl(folder / "candidates.jsonl", rows)
    with open(folder / "human.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["item_id", "model", "dimension", "rater", "score"],
                                  *ratings])
    return folder


def responder(body: dict) -> StubReply:
    if body.get("model") == "broken":
        return StubReply(status=401, text="invalid api key")
    return support.fake_judge(body)


@pytest.fixture(scope="module")
def stub(offline):
    with StubServer(responder) as server:
        yield server


def write_config(folder: Path, stub: StubServer, inputs: Path, body: str = GRID,
                 cache: str = "cache.sqlite", human: bool = True) -> Path:
    """A config over the inputs; no control replies unless ``body`` sets ``controls``."""
    path = folder / "ablation.yaml"
    body = body if "controls:" in body else body + "controls: none\n"
    rated = f"\nhuman: {inputs / 'human.csv'}" if human else ""
    path.write_text(f"candidates: {inputs / 'candidates.jsonl'}{rated}"
                    f"\napi_base: {stub.base_url}\ncache: {cache}\nmax_tries: 1\n"
                    f"analysis: {{rounds: 200}}\n" + ("" if "judge:" in body else
                                                      "judges: [openai/gpt-4o-mini]\n") + body,
                    encoding="utf-8")
    return path


def ablate(config: Path, out: Path, *extra: str) -> int:
    return main(["ablate", "--config", str(config), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def ablated(tmp_path_factory, stub, inputs):
    """Two runs of one 2x2 ablation: the requests each made, exit codes and output."""
    folder = tmp_path_factory.mktemp("ablate")
    config = write_config(folder, stub, inputs)
    before = len(stub.requests)
    first = ablate(config, folder / "out")
    middle = len(stub.requests)
    second = ablate(config, folder / "out")
    return {"folder": folder, "config": config, "codes": (first, second),
            "requests": (middle - before, len(stub.requests) - middle),
            "result": json.loads((folder / "out" / "ablation.json").read_text())}


def test_both_runs_exit_0_and_the_second_makes_no_provider_request(ablated):
    assert ablated["codes"] == (0, 0)
    first, second = ablated["requests"]
    assert first == 2 * (18 * 3 + 18)  # per template: 3 separate calls + 1 joint per reply
    assert second == 0


def test_every_output_file_is_written(ablated):
    out = ablated["folder"] / "out"
    for name in ("ablation.json", "ablation.md", "ablation.svg", "cells.json"):
        assert (out / name).stat().st_size > 0, name
    for cell in CELLS:
        assert (out / "cells" / cell / "judgments.jsonl").stat().st_size > 0
        assert json.loads((out / "cells" / cell / "run.json").read_text())["status"] == "complete"
    assert "<svg" in (out / "ablation.svg").read_text()
    assert all(cell in (out / "ablation.md").read_text() for cell in CELLS)


def test_each_cell_is_one_variant_and_the_baseline_comes_first(ablated):
    result = ablated["result"]
    assert result["baseline"] == CELLS[0]
    assert result["variants"][0]["variant"] == CELLS[0]
    assert sorted(v["variant"] for v in result["variants"]) == sorted(CELLS)
    assert [c["name"] for c in result["cells"]] == CELLS


def test_cells_sharing_a_prompt_variant_stay_apart(ablated):
    by = {v["variant"]: v for v in ablated["result"]["variants"]}
    assert by["template=default,mode=separate"]["describe"]["mode"] == ["separate"]
    assert by["template=default,mode=joint"]["describe"]["mode"] == ["joint"]
    assert by["template=scale10,mode=joint"]["describe"]["scale"] == ["1-10"]
    assert all(v["n_rows"] == 18 * 3 for v in by.values())


def test_each_cell_has_human_correlations_with_intervals_and_a_paired_test(ablated):
    for v in ablated["result"]["variants"]:
        assert set(v["human"]) == set(DIMENSIONS)
        for dim in DIMENSIONS:
            rho = v["human"][dim]["spearman"]
            assert rho["value"] is not None and rho["ci_low"] <= rho["value"] <= rho["ci_high"]
            paired = v["human"][dim]["vs_baseline"]
            assert (paired is None) == (v["variant"] == CELLS[0])
    base = ablated["result"]["variants"][0]["human"]["empathy"]["spearman"]["value"]
    assert base > 0.5  # the raters were made to follow the baseline's scores


def test_each_cell_reports_tokens_costs_and_leaderboard_agreement(ablated):
    for v in ablated["result"]["variants"]:
        assert v["prompt_tokens"] > 0 and v["completion_tokens"] > 0
        assert v["cost_usd"] > 0 and v["cost_unknown_rows"] == 0
        assert v["status"]["invalid_rate"] == 0.0
        assert v["leaderboard"]["n_models"] == 3 and v["leaderboard"]["spearman"] is not None
    assert ablated["result"]["variants"][0]["leaderboard"]["spearman"] == pytest.approx(1.0)


def test_progress_names_every_cell_with_a_one_line_summary(stub, inputs, tmp_path, capsys):
    config = write_config(tmp_path, stub, inputs, "grid: {template: [default, scale10]}\n")
    assert ablate(config, tmp_path / "out") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1/2] template=default -> ")
    assert lines[1].startswith("[1/2] template=default: 54 judgments (54 ok) · ")
    assert any(line.startswith("[2/2] template=scale10: 54 judgments") for line in lines)
    assert lines[-1].startswith("wrote ")


def test_dry_run_prints_each_cell_and_calls_nothing(stub, inputs, tmp_path, capsys):
    config = write_config(tmp_path, stub, inputs, cache="fresh.sqlite")
    before = len(stub.requests)
    assert ablate(config, tmp_path / "out", "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(stub.requests) == before and not (tmp_path / "out").exists()
    assert [line.split(":")[0] for line in lines[:4]] == [f"dry run · {c}" for c in CELLS]
    assert "54 provider calls" in lines[0] and "18 provider calls" in lines[1]
    assert lines[-1].startswith("dry run · total: 144 provider calls")


def test_a_failing_cell_is_named_with_how_to_resume(stub, inputs, tmp_path, capsys):
    config = write_config(tmp_path, stub, inputs,
                          "grid: {judge: [openai/gpt-4o-mini, openai/broken]}\n")
    assert ablate(config, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "cell 'judge=openai/broken' stopped" in err and "HTTP 401" in err
    assert f"To resume (finished cells and cached answers cost nothing): csc-harness ablate " \
           f"--config {config}" in err
    assert not (tmp_path / "out" / "ablation.json").exists()


def test_changed_settings_are_refused_for_a_judged_cell(ablated, tmp_path, capsys):
    config = tmp_path / "changed.yaml"
    config.write_text(ablated["config"].read_text() + "max_tokens: 64\n", encoding="utf-8")
    assert ablate(config, ablated["folder"] / "out") == 2
    err = capsys.readouterr().err
    assert f"cell {CELLS[0]!r} was judged with other settings (max_tokens changed)" in err


def test_cells_are_loaded_apart_and_relabelled_even_when_their_rows_share_identities(tmp_path):
    rows = list(synthetic_rows(("m1", "m2"), dialogues=3, turns=2, dimensions=("empathy",)))
    for name in ("a", "b"):
        (tmp_path / "cells" / name).mkdir(parents=True)
        write_jsonl(iter(rows), tmp_path / "cells" / name / "judgments.jsonl")
    loaded = load_cell_rows([Cell("a", {}), Cell("b", {})], tmp_path)
    assert len(loaded) == 2 * len(rows)
    assert loaded["variant"].value_counts().to_dict() == {"a": len(rows), "b": len(rows)}


def test_rows_of_an_earlier_template_version_are_left_out(tmp_path):
    rows = list(synthetic_rows(("m1",), dialogues=2, turns=2, dimensions=("empathy",)))
    old = [dict(r, prompt_id="empathy@1#old") for r in rows]
    new = [dict(r, prompt_id="empathy@1#new") for r in rows]
    folder = tmp_path / "cells" / "a"
    folder.mkdir(parents=True)
    write_jsonl(iter(old + new), folder / "judgments.jsonl")
    (folder / "run.json").write_text(json.dumps({"prompts": {"empathy": {
        "prompt_id": "empathy@1#new"}}}))
    loaded = load_cell_rows([Cell("a", {})], tmp_path)
    assert set(loaded["prompt_id"]) == {"empathy@1#new"} and len(loaded) == len(rows)


def test_a_dry_run_refuses_changed_settings_too_and_writes_nothing(ablated, tmp_path, capsys):
    config = tmp_path / "changed.yaml"
    config.write_text(ablated["config"].read_text() + "temperature: 0.5\n", encoding="utf-8")
    manifest = (ablated["folder"] / "out" / "cells.json").read_text()
    assert ablate(config, ablated["folder"] / "out", "--dry-run") == 2
    assert "(sampling_temperature changed)" in capsys.readouterr().err
    assert (ablated["folder"] / "out" / "cells.json").read_text() == manifest


def test_max_cost_is_a_budget_for_the_whole_ablation(ablated, stub, inputs, tmp_path, capsys):
    first = ablated["result"]["variants"][0]["cost_usd"]  # what the first cell costs
    config = write_config(tmp_path, stub, inputs, "grid: {template: [default, scale10]}\n"
                          f"max_cost: {1.5 * first}\nconcurrency: 1\n", cache="fresh.sqlite")
    assert ablate(config, tmp_path / "out") == 3
    captured = capsys.readouterr()
    assert "[1/2] template=default: 54 judgments (54 ok)" in captured.out
    assert "cell 'template=scale10' stopped" in captured.err
    assert "stopped before exceeding" in captured.err and "max_cost in its config" in captured.err


@pytest.mark.parametrize("human", [pytest.param(True, id="with-humans"),
                                   pytest.param(False, id="without-humans")])
def test_control_replies_give_each_cell_its_discrimination(stub, inputs, tmp_path, human):
    body = "grid: {template: [default, scale10]}\ncontrols: [mismatch, padded]\n"
    config = write_config(tmp_path, stub, inputs, body, human=human)
    assert ablate(config, tmp_path / "out") == 0
    result = json.loads((tmp_path / "out" / "ablation.json").read_text())
    for v in result["variants"]:
        dims = v["discrimination"]["dimensions"]
        assert set(dims) == set(DIMENSIONS)
        assert all(0 <= d["discrimination"] <= 1 and d["n"] > 0 for d in dims.values())
        assert v["leaderboard"]["n_models"] == 3  # the controls are not models
    md = (tmp_path / "out" / "ablation.md").read_text()
    assert "## Discrimination" in md
    if human:
        assert result["ranked_by"] is None and "Empathy vs humans" in md
    else:
        assert result["ranked_by"] == "discrimination"
        assert sorted(v["rank"] for v in result["variants"]) == [1, 2]
        assert "ranked by discrimination" in md
