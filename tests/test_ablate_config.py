"""The ablation config: grid expansion, cell names, judge settings per cell, strict errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from csc_harness.ablate import cell_folder, cell_name, expand_grid, load_ablation
from csc_harness.cli import main
from csc_harness.errors import DataError, UserError
from csc_harness.llm import StubServer, default_cache_path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ablation.yaml"
BASE = "candidates: replies.jsonl\njudges: [openai/judge-a]\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ablation.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_grid_is_the_cartesian_product_in_axis_order_whatever_the_key_order(tmp_path):
    config = load_ablation(write(tmp_path, BASE + "grid:\n  mode: [separate, joint]\n"
                                 "  template: [default, scale10]\n"))
    assert [c.name for c in config.cells] == [
        "template=default,mode=separate", "template=default,mode=joint",
        "template=scale10,mode=separate", "template=scale10,mode=joint"]
    assert config.baseline == "template=default,mode=separate"


def test_expand_grid_crosses_every_value_of_every_axis():
    cells = expand_grid({"verdict": ["rationale_first", "score_only"],
                         "reference_guided": [False, True], "judge": ["a", "b", "c"]})
    assert len(cells) == 12
    assert list(cells[0]) == ["reference_guided", "verdict", "judge"]
    assert len({tuple(c.values()) for c in cells}) == 12


def test_each_axis_sets_its_judge_option_and_absent_axes_keep_the_defaults(tmp_path):
    config = load_ablation(write(tmp_path, BASE + "samples: 3\ngrid:\n  template: [scale10]\n"
                                 "  reference_guided: [true]\n  verdict: [score_only]\n"))
    (cell,) = config.cells
    judge = config.judge_config(cell)
    assert (judge.variant, judge.reference_guided, judge.verdict) == ("scale10", True,
                                                                      "score_only")
    assert (judge.mode, judge.judges, judge.samples) == ("separate", ("openai/judge-a",), 3)
    assert cell.name == "template=scale10,reference_guided=true,verdict=score_only"


def test_a_judge_axis_replaces_judges_and_a_list_value_is_a_panel(tmp_path):
    config = load_ablation(write(tmp_path, "candidates: r.jsonl\ngrid:\n  judge: "
                                 "[openai/judge-a, [openai/judge-a, openai/judge-b]]\n"))
    names = [c.name for c in config.cells]
    assert names == ["judge=openai/judge-a", "judge=openai/judge-a+openai/judge-b"]
    assert config.judge_config(config.cells[1]).judges == ("openai/judge-a", "openai/judge-b")
    assert all("/" not in c.folder for c in config.cells)


def test_explicit_variants_keep_their_names_and_unnamed_ones_are_named_by_settings(tmp_path):
    config = load_ablation(write(tmp_path, BASE + "baseline: joint\nvariants:\n"
                                 "  - {}\n  - {name: joint, mode: joint}\n"
                                 "  - {template: scale10, mode: joint}\n"))
    assert [c.name for c in config.cells] == ["default", "joint",
                                              "template=scale10,mode=joint"]
    assert config.baseline == "joint"
    assert config.judge_config(config.cells[1]).mode == "joint"


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "ablation.yaml"
    path.write_text(BASE + "human: h.csv\ncache: c.sqlite\ndata: bundled:sample\n"
                    "grid: {mode: [joint]}\n", encoding="utf-8")
    config = load_ablation(path)
    assert config.candidates == ((tmp_path / "sub" / "replies.jsonl").resolve(),)
    assert config.human == (tmp_path / "sub" / "h.csv").resolve()
    assert config.client["cache"] == str((tmp_path / "sub" / "c.sqlite").resolve())
    assert config.data == "bundled:sample"


def test_long_cell_names_get_short_unique_folders():
    a, b = "judge=" + "x" * 200, "judge=" + "x" * 199 + "y"
    assert len(cell_folder(a)) <= 100 and cell_folder(a) != cell_folder(b)
    assert cell_name({}) == "default"


def test_the_documented_example_loads():
    config = load_ablation(EXAMPLE)
    assert len(config.cells) == 16
    assert config.baseline == config.cells[0].name
    assert config.max_cost == 8.0 and config.analysis["rounds"] == 1000
    assert config.controls == ("gold", "mismatch", "padded") and config.control_dialogues == 6


def test_every_path_the_example_names_exists_in_the_repository():
    config = load_ablation(EXAMPLE)
    paths = [*config.candidates, config.human, config.judging.get("prompts"),
             config.data if config.data and not config.data.startswith(("hf:", "bundled:"))
             else None]
    named = [Path(p) for p in paths if p is not None]
    assert named and all(p.exists() for p in named), [str(p) for p in named if not p.exists()]
    assert all(p.is_relative_to(EXAMPLE.parents[1]) for p in named)
    # a cache inside the repository would be written by every run
    assert "cache" not in config.client


@pytest.mark.parametrize(("text", "field", "fragment"), [
    pytest.param(BASE + "judge: x\ngrid: {mode: [joint]}\n", "judge",
                 "unknown key; valid keys: candidates, data, human, judges", id="unknown-key"),
    pytest.param(BASE + "grid: {scale: [5, 10]}\n", "grid.scale",
                 "valid keys: template, mode, reference_guided, verdict, judge", id="unknown-axis"),
    pytest.param(BASE + "grid: {mode: [separate, both]}\n", "grid.mode[1]",
                 "'both' is not one of separate, joint", id="bad-mode"),
    pytest.param(BASE + "grid: {template: default}\n", "grid.template",
                 "expected a non-empty list", id="axis-not-a-list"),
    pytest.param(BASE + "grid: {template: []}\n", "grid.template",
                 "expected a non-empty list", id="empty-axis"),
    pytest.param(BASE + "grid: {mode: [joint, joint]}\n", "grid.mode", "a value repeats",
                 id="repeated-value"),
    pytest.param(BASE + "grid: {reference_guided: [yes-please]}\n", "grid.reference_guided[0]",
                 "expected true or false", id="not-a-bool"),
    pytest.param(BASE + "grid: {}\n", "grid", "no axes", id="no-axes"),
    pytest.param(BASE + "grid: {mode: [joint]}\nvariants: [{}]\n", "grid",
                 "exactly one of 'grid'", id="grid-and-variants"),
    pytest.param(BASE, "grid", "exactly one of 'grid'", id="neither"),
    pytest.param("judges: [j]\ngrid: {mode: [joint]}\n", "candidates", "required",
                 id="no-candidates"),
    pytest.param("candidates: r.jsonl\ngrid: {mode: [joint]}\n", "judges", "required",
                 id="no-judges"),
    pytest.param(BASE + "grid: {judge: [a, b]}\n", "judges", "unused", id="judges-twice"),
    pytest.param(BASE + "baseline: nope\ngrid: {mode: [joint]}\n", "baseline",
                 "'nope' is not a cell; cells: mode=joint", id="unknown-baseline"),
    pytest.param(BASE + "samples: 0\ngrid: {mode: [joint]}\n", "samples",
                 "whole number >= 1", id="bad-samples"),
    pytest.param(BASE + "rpm: fast\ngrid: {mode: [joint]}\n", "rpm", "expected a number",
                 id="bad-rpm"),
    pytest.param(BASE + "cache_mode: sometimes\ngrid: {mode: [joint]}\n", "cache_mode",
                 "not one of rw, replay, off", id="bad-cache-mode"),
    pytest.param(BASE + "analysis: {confidence: 1.5}\ngrid: {mode: [joint]}\n",
                 "analysis.confidence", "between 0 and 1", id="bad-confidence"),
    pytest.param(BASE + "analysis: {bootstrap: 5}\ngrid: {mode: [joint]}\n",
                 "analysis.bootstrap", "valid keys: rounds, seed, confidence, score",
                 id="unknown-analysis-key"),
    pytest.param(BASE + "variants: [{scale: 10}]\n", "variants[0].scale",
                 "valid keys: name, template", id="unknown-variant-key"),
    pytest.param(BASE + "variants: [{name: a}, {name: a, mode: joint}]\n", "variants",
                 "share a name or folder", id="duplicate-names"),
    pytest.param("- candidates\n", "", "expected a mapping", id="not-a-mapping"),
])
def test_bad_config_is_a_one_line_error_naming_file_and_key(tmp_path, text, field, fragment):
    with pytest.raises(DataError) as info:
        load_ablation(write(tmp_path, text))
    message = str(info.value)
    assert "ablation.yaml" in message and fragment in message and "\n" not in message
    if field:
        assert f"field {field!r}" in message


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"ablation.yaml, line 2: not valid YAML"):
        load_ablation(write(tmp_path, "candidates: a\nb: c: d\n"))


def test_an_unknown_template_fails_before_anything_runs_and_names_the_cell(tmp_path):
    with pytest.raises(UserError, match=r"cell 'template=nope'.*no judge template has variant"):
        load_ablation(write(tmp_path, BASE + "grid: {template: [default, nope]}\n"))


def test_cli_turns_a_bad_config_into_one_line_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, BASE + "grid: {mode: [both]}\n")
    assert main(["ablate", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "grid.mode[0]" in err and str(path) in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------- the shipped example, run


def repo_copy(root: Path, every: int = 1) -> Path:
    """``examples/`` and the committed demo replies the example names, laid out as in the
    repository (so nothing a run writes can reach the real one); ``every``: keep every
    n-th reply only."""
    shutil.copytree(REPO / "examples", root / "examples")
    shutil.copytree(REPO / "results" / "demo" / "lm_eval", root / "results" / "demo" / "lm_eval")
    for samples in (root / "results").rglob("samples_*.jsonl"):
        lines = samples.read_text(encoding="utf-8").splitlines(keepends=True)
        samples.write_text("".join(lines[::every]), encoding="utf-8")
    return root / "examples" / "ablation.yaml"


def files(*roots: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for root in roots for p in root.rglob("*")}


def test_the_example_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    repo_copy(tmp_path / "repo", every=10)  # 45 of the 447 replies: token counting is slow
    monkeypatch.chdir(tmp_path / "repo")
    before = files(tmp_path)
    assert main(["ablate", "--config", "examples/ablation.yaml", "--out", "out/ablation",
                 "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert files(tmp_path) == before and not default_cache_path().exists()
    assert len(lines) == 17 and all(line.startswith("dry run · ") for line in lines)
    # 45 replies + gold, mismatch and padded on the 6 items of its 6 control dialogues
    replies = 45 + 3 * 6
    assert lines[0].startswith("dry run · template=default,mode=separate,reference_guided="
                               f"false,verdict=rationale_first: {replies * 3} provider calls")
    assert lines[-1].startswith(f"dry run · total: {replies * (8 * 3 + 8)} provider calls · "
                                "up to $")


def test_the_example_runs_as_shipped_with_only_its_judge_pointed_at_a_stub(tmp_path,
                                                                          monkeypatch):
    support = pytest.importorskip("test_judge_support", reason="the judge suite's fake judge")
    config = repo_copy(tmp_path / "repo", every=100)  # 5 replies from 5 dialogues
    monkeypatch.chdir(tmp_path / "repo")
    args = ["ablate", "--config", "examples/ablation.yaml", "--out", "out/ablation",
            "--no-progress"]
    with StubServer(support.fake_judge) as stub:
        config.write_text(config.read_text(encoding="utf-8") + f"api_base: {stub.base_url}\n",
                          encoding="utf-8")
        assert main(args) == 0
        first = len(stub.requests)
        assert main(args) == 0
    replies = 5 + 3 * 5  # and gold, mismatch and padded on each (6 control dialogues > 5)
    assert first == replies * (8 * 3 + 8) and len(stub.requests) == first  # re-run is free
    result = json.loads((tmp_path / "repo" / "out" / "ablation" / "ablation.json").read_text())
    assert len(result["variants"]) == 16 and result["baseline"] == load_ablation(
        config).cells[0].name
    assert all(v["status"]["invalid_rate"] == 0.0 for v in result["variants"])
    # no human ratings ship: the cells are ranked by how well each tells the controls apart
    assert result["ranked_by"] == "discrimination" and len(result["ranking"]) == 16
