"""``hf:<dataset>[#<set>]`` loads one file (CSConv by default), ``data check`` says which
file it read and warns about a CSConv of the wrong size, and ``--stage-map`` reaches every
command that loads data."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from conftest import MINI_CSCONV

from csc_harness._hub import parse_hub_spec
from csc_harness.cli import build_parser, main
from csc_harness.data import (
    CSCONV_COUNTS,
    STAGE_MAP_VAR,
    count_warnings,
    load_conversations,
    load_examples,
    load_file,
    load_source,
)
from csc_harness.errors import DataError, UserError

# Training dialogues written for these tests; RoleCS.json must never leak into CSConv.
ROLECS = [
    {"id": f"r{i}", "source": "账户交易", "dialogue": [
        {"speaker": "客户", "text": f"我的第{i}笔转账还没到账。"},
        {"speaker": "客服", "strategy": "策略1 礼貌问候", "text": "您好，请问有什么可以帮您？"},
        {"speaker": "客户", "text": "转账显示处理中。"},
        {"speaker": "客服", "strategy": "策略8 解决实施", "text": "已为您加急处理，请稍候。"},
    ]} for i in range(3)
]
# No id: its id is derived from the dialogue and must not depend on how it was read.
NO_ID = {"source": "投诉处理", "dialogue": [
    {"speaker": "客户", "text": "上次的投诉没人回复。"},
    {"speaker": "客服", "strategy": "策略5 情感管理", "text": "非常抱歉让您久等了。"},
]}


@pytest.fixture(autouse=True)
def _no_stage_map(monkeypatch):
    """Commands export --stage-map into the environment; start empty, restore after."""
    monkeypatch.setenv(STAGE_MAP_VAR, "")


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every DNS look-up or connection: proves nothing was tried,
    even where the loader turns the refusal into a DataError."""
    attempts: list[object] = []

    def refuse(what):
        def call(*args, **kwargs):
            attempts.append((what, args[1] if what == "connect" else args[0]))
            raise OSError(f"test refused {what}")
        return call

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    yield attempts
    assert attempts == []


@pytest.fixture
def hub_folder(tmp_path) -> Path:
    """A folder laid out like the hub copy: CSConv.json and RoleCS.json side by side."""
    folder = tmp_path / "DianJin-CSC-Data"
    folder.mkdir()
    for name, records in (("CSConv.json", [*MINI_CSCONV, NO_ID]), ("RoleCS.json", ROLECS)):
        (folder / name).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    (folder / "README.md").write_text("# a copy of the hub dataset\n", encoding="utf-8")
    return folder


def test_hf_folder_loads_exactly_the_csconv_file(hub_folder, no_network):
    loaded = load_source(f"hf:{hub_folder}")
    assert loaded.conversations == load_file(hub_folder / "CSConv.json")
    assert [c.id for c in loaded.conversations][:2] == ["z1", "e1"]
    assert not any(c.id.startswith("r") for c in loaded.conversations)
    assert loaded.source == str(hub_folder / "CSConv.json")
    assert loaded.set_name == "CSConv"


def test_hf_folder_fragment_loads_the_training_set(hub_folder, no_network):
    convs = load_conversations(f"hf:{hub_folder}#RoleCS")
    assert [c.id for c in convs] == ["r0", "r1", "r2"]
    assert convs == load_file(hub_folder / "RoleCS.json")


def test_csconv_data_env_takes_an_hf_folder_spec(hub_folder, monkeypatch, no_network):
    monkeypatch.setenv("CSCONV_DATA", f"hf:{hub_folder}")
    assert [ex.item_id for ex in load_examples()][:2] == ["z1:1", "z1:3"]


@pytest.mark.parametrize("spec_suffix, present, message", [
    pytest.param("#Dev", ("CSConv.json", "RoleCS.json"),
                 "no data file named 'Dev' (.json/.jsonl); files: CSConv.json, RoleCS.json",
                 id="unknown-set"),
    pytest.param("", ("RoleCS.json",), "no data file named 'CSConv' (.json/.jsonl); files: "
                 "RoleCS.json", id="csconv-missing"),
    pytest.param("#", ("CSConv.json",), "empty set after '#'", id="empty-fragment"),
    pytest.param("/missing", (), "no such folder, and not a hub dataset id",
                 id="missing-folder"),
])
def test_a_missing_selection_is_one_line_naming_the_files(tmp_path, spec_suffix, present,
                                                          message, no_network):
    for name in present:
        (tmp_path / name).write_text(json.dumps(ROLECS), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_conversations(f"hf:{tmp_path}{spec_suffix}")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_hub_id_offline_is_one_line_naming_csconv_data(monkeypatch, capsys, no_network):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert main(["data", "check", "hf:DianJin/DianJin-CSC-Data"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "hf:DianJin/DianJin-CSC-Data" in err and "offline" in err
    assert "CSCONV_DATA=/path/to/CSConv.json" in err


@pytest.mark.parametrize("spec, expected", [
    pytest.param("hf:", ("DianJin/DianJin-CSC-Data", "CSConv", False), id="default"),
    pytest.param("hf:a/b", ("a/b", "CSConv", False), id="id"),
    pytest.param("hf:a/b#RoleCS", ("a/b", "RoleCS", True), id="fragment"),
    pytest.param("hf:/data/x#sub/CSConv.jsonl", ("/data/x", "sub/CSConv.jsonl", True),
                 id="path-fragment"),
])
def test_hub_spec_parses_dataset_and_set(spec, expected):
    hub = parse_hub_spec(spec, "DianJin/DianJin-CSC-Data")
    assert (hub.dataset, hub.name, hub.explicit) == expected


def test_count_warning_only_for_a_set_called_csconv_of_the_wrong_size():
    assert count_warnings("CSConv", CSCONV_COUNTS) == []
    assert count_warnings("RoleCS", {"dialogues": 3}) == []
    assert count_warnings(None, {"dialogues": 3}) == []
    (warning,) = count_warnings("csconv", {**CSCONV_COUNTS, "dialogues": 13087})
    assert "13087 dialogues (expected 1,855)" in warning and "utterances" not in warning


def test_data_check_reports_the_file_read_and_warns_about_a_small_csconv(hub_folder, capsys,
                                                                         no_network):
    assert main(["data", "check", f"hf:{hub_folder}", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["source"] == str(hub_folder / "CSConv.json")
    assert report["dialogues"] == 3 and report["supporter_turns"] == 5
    (warning,) = report["warnings"]
    assert "3 dialogues (expected 1,855)" in warning
    assert "10 utterances (expected 50,587)" in warning
    assert "5 supporter turns (expected 25,810)" in warning
    assert "warning: this CSConv holds 3 dialogues" in captured.err

    assert main(["data", "check", f"hf:{hub_folder}"]) == 0
    captured = capsys.readouterr()
    assert f"  source: {hub_folder / 'CSConv.json'}" in captured.out.splitlines()
    assert captured.err.count("warning:") == 1


@pytest.mark.parametrize("spec, source, warned", [
    pytest.param("hf:{folder}#RoleCS", "{folder}/RoleCS.json", False, id="training-set"),
    pytest.param("{folder}/CSConv.json", "{folder}/CSConv.json", True, id="file-named-csconv"),
    pytest.param("{folder}/RoleCS.json", "{folder}/RoleCS.json", False, id="other-file"),
])
def test_data_check_warns_by_the_set_name(hub_folder, capsys, spec, source, warned):
    assert main(["data", "check", spec.format(folder=hub_folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == source.format(folder=hub_folder)
    assert bool(report["warnings"]) is warned


def test_data_check_of_the_bundled_sample_names_its_file_and_does_not_warn(capsys):
    assert main(["data", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"].endswith("csconv_sample.json") and report["warnings"] == []


# --stage-map on every command that loads data -------------------------------------------

LOADING_COMMANDS = {
    "data": ["data", "check"],
    "judge": ["judge", "--candidates", "c.jsonl", "--judge", "openai/j", "--out", "o"],
    "run": ["run", "--out", "o"],
    "ablate": ["ablate", "--config", "a.yaml", "--out", "o"],
    "check-judge": ["check-judge", "--judge", "openai/j", "--out", "o"],
}


@pytest.mark.parametrize("command", list(LOADING_COMMANDS))
def test_every_data_command_parses_stage_map(command):
    args = build_parser().parse_args([*LOADING_COMMANDS[command], "--stage-map", "m.json"])
    assert args.stage_map == "m.json"


@pytest.fixture
def stage_map(tmp_path) -> Path:
    """Greeting moves from Connecting to Maintaining."""
    path = tmp_path / "stages.json"
    path.write_text(json.dumps({"Greeting": "Maintaining"}), encoding="utf-8")
    return path


def _probe(seen: list, data: Path, stop: bool):
    """Stands in for the step after option parsing: records the stages the data would get
    at that point (and what lm-eval would be called with), then stops the command."""
    def probe(*args, **kwargs):
        seen.extend(ex.stage for ex in load_examples(str(data)) if ex.strategy == "GT")
        seen.append(list(sys.argv))
        if stop:
            raise UserError("probe stop")
    return probe


@pytest.mark.parametrize("command, target", [
    pytest.param(["judge", "--candidates", "c.jsonl", "--judge", "openai/j", "--out", "o"],
                 "csc_harness.judge.load_candidates", id="judge"),
    pytest.param(["run", "--out", "o"], "csc_harness.pipeline.run_pipeline", id="run"),
    pytest.param(["ablate", "--config", "a.yaml", "--out", "o"],
                 "csc_harness.ablate.load_ablation", id="ablate"),
    pytest.param(["check-judge", "--judge", "openai/j", "--out", "o", "--limit", "1"],
                 "csc_harness.controls.sample_dialogues", id="check-judge"),
    pytest.param(["lm-eval", "--tasks", "csconv"], "lm_eval.__main__.cli_evaluate",
                 id="lm-eval"),
])
def test_stage_map_is_applied_before_data_loads(command, target, stage_map, data_file,
                                                monkeypatch, capsys):
    lm_eval = target.startswith("lm_eval")
    if lm_eval:
        pytest.importorskip("lm_eval")
    monkeypatch.setattr(sys, "argv", ["pytest"])
    seen: list = []
    monkeypatch.setattr(target, _probe(seen, data_file, stop=not lm_eval))
    assert main([*command, "--stage-map", str(stage_map)]) == (0 if lm_eval else 2)
    assert seen[:2] == ["Maintaining", "Maintaining"]
    if lm_eval:  # lm_eval gets everything else, and never our option
        assert seen[2][0] == "lm_eval" and seen[2][-2:] == ["--tasks", "csconv"]
        assert not any("stage-map" in a for a in seen[2])


@pytest.mark.parametrize("command", [
    *LOADING_COMMANDS.values(), ["lm-eval", "--tasks", "csconv"]], ids=[
    *LOADING_COMMANDS, "lm-eval"])
def test_a_bad_stage_map_stops_every_command_with_one_line(command, tmp_path, capsys):
    bad = tmp_path / "stages.json"
    bad.write_text('{"GT": "Nowhere"}', encoding="utf-8")
    assert main([*command, "--stage-map", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown stage 'Nowhere'" in err


def test_judge_rows_carry_the_overridden_stage(stage_map, tmp_path, capsys):
    from test_judge_support import fake_judge, read_rows, write_jsonl

    from csc_harness.llm import StubServer

    greetings = [ex for ex in load_examples() if ex.strategy == "GT"][:2]
    candidates = write_jsonl(tmp_path / "candidates.jsonl", [
        {"item_id": ex.item_id, "model": "m", "reply": ex.reply} for ex in greetings])
    with StubServer(fake_judge) as stub:
        code = main(["judge", "--candidates", str(candidates), "--judge", "openai/judge",
                     "--api-base", stub.base_url, "--cache", str(tmp_path / "c.sqlite"),
                     "--out", str(tmp_path / "out"), "--no-progress",
                     "--stage-map", str(stage_map)])
    assert code == 0, capsys.readouterr().err
    rows = read_rows(tmp_path / "out")
    assert rows and {row["stage"] for row in rows} == {"Maintaining"}
