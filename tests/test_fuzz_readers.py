"""Every file reader reachable from the CLI, fed random bytes and random JSON shapes.

Each case runs the real command in-process (``csc_harness.cli.main``) on a file holding
fuzzed content and must end the way bad input ends: exit code 2, one line on stderr, no
traceback. The generators are seeded, so a failure names a case that reproduces.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.cli import main
from csc_harness.data import load_examples

CASES = 10
"""Random cases per reader (on top of the fixed hostile ones)."""

DEEP = 100_000


def _json_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.choice(["dict", "list", "str", "int", "float", "bool", "null", "nul", "big"]
                      if depth < 4 else ["str", "int", "null", "nul", "big"])
    if kind == "dict":
        keys = ["item_id", "model", "reply", "score", "dialogue", "results", "doc", "rater",
                "candidates", "grid", "judges", "speaker", "text", "dimension", "status",
                "".join(rng.choice("ab\x00\n|=") for _ in range(3))]
        return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    if kind == "list":
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        "str": lambda: rng.choice(["", "x", "客服", "a\x00b", "\n\n", "=1+1", "[Greeting] hi"]),
        "int": lambda: rng.choice([0, -1, 3, 2**63, 10**30]),
        "float": lambda: rng.choice([0.5, -1e308, 1e-300]),
        "bool": lambda: rng.choice([True, False]),
        "null": lambda: None,
        "nul": lambda: "\x00" * rng.randint(1, 3),
        "big": lambda: 10 ** rng.randint(19, 40),
    }[kind]()


def _random_content(rng: random.Random, jsonl: bool) -> bytes:
    """Random bytes, a random JSON document, or random JSON lines."""
    roll = rng.random()
    if roll < 0.3:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if roll < 0.6 or not jsonl:
        return json.dumps(_json_value(rng), ensure_ascii=rng.random() < 0.5).encode()
    return b"\n".join(json.dumps(_json_value(rng)).encode() for _ in range(rng.randint(1, 4)))


HOSTILE = {
    "empty": b"",
    "deep-list": b"[" * DEEP + b"]" * DEEP,
    "deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep-unclosed": b"[" * DEEP,
    "infinity": b'{"score": Infinity, "results": {"csconv_reply": {"bleu2,none": Infinity}}}',
    "nan": b'{"a": NaN}\n',
    "huge-float": b'{"a": 1e999}\n',
    "huge-int": b'{"a": ' + b"9" * 5000 + b"}\n",
    "lone-surrogate": b'{"item_id": "\\ud800", "model": "m", "reply": "x"}\n',
    "nul-strings": b'{"item_id": "\\u0000", "model": "\\u0000", "reply": "\\u0000"}\n',
    "not-utf8": b'{"a": "\xff\xfe"}\n',
    "bom-array": b"\xef\xbb\xbf[1, 2]",
    "scalar-root": b"42",
    "list-root": b"[[], {}, null]",
}
YAML = {
    "yaml-deep": b"a: " + b"[" * DEEP,
    "yaml-deep-block": b"- " * DEEP + b"x",
    "yaml-anchors": b"a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n",
    "yaml-nul": b"candidates: \x00\n",
    "yaml-huge-int": b"judges: " + b"9" * 5000 + b"\n",
}
CSV = {
    "csv-nul": b"item_id,model,dimension,rater,score\n\x00,\x00,\x00,\x00,\x00\n",
    "csv-header-only": b"item_id,model,dimension,rater,score\n",
    "csv-infinity": b"item_id,model,dimension,rater,score\na,m,d,r,inf\n",
    "csv-huge-field": b"item_id,model,dimension,rater,score\n" + b"a" * 200_000 + b",m,d,r,1\n",
}


def _cases(seed: int, jsonl: bool, extra: dict[str, bytes] | None = None) -> list:
    rng = random.Random(seed)
    fixed = [pytest.param(content, id=name) for name, content in (HOSTILE | (extra or {})).items()]
    return fixed + [pytest.param(_random_content(rng, jsonl), id=f"random-{seed}-{i}")
                    for i in range(CASES)]


def _judgments(folder: Path) -> Path:
    write_jsonl(synthetic_rows(("alpha", "beta"), dialogues=3, turns=2, seed=1),
                folder / "judgments.jsonl")
    return folder


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _assert_bad_input(code: int, err: str, *, may_pass: bool = False) -> None:
    """Exit 2 with one line on stderr; ``may_pass``: or exit 0 (the fuzzed file happens to
    be valid, as any JSON object is for an lm-eval results file)."""
    assert "Traceback" not in err
    if may_pass and code == 0:
        return
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("csc-harness "), err


def _check(tmp_path: Path, capsys, name: str, content: bytes,
           argv: Callable[[Path, Path], list[str]], *, may_pass: bool = False) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    _assert_bad_input(*_run(argv(path, tmp_path), capsys), may_pass=may_pass)


@pytest.mark.parametrize("content", _cases(1, jsonl=True))
def test_data_check_refuses_fuzzed_dialogue_files(tmp_path, capsys, content):
    # JSON array or JSONL is told apart by the content, not the name.
    _check(tmp_path, capsys, "dialogues.jsonl", content,
           lambda p, _: ["data", "check", str(p)])


@pytest.mark.parametrize("content", _cases(2, jsonl=True))
def test_judge_refuses_fuzzed_candidate_jsonl(tmp_path, capsys, content):
    _check(tmp_path, capsys, "candidates.jsonl", content,
           lambda p, t: ["judge", "--candidates", str(p), "--judge", "openai/j", "--dry-run",
                         "--out", str(t / "out")])


@pytest.mark.parametrize("content", _cases(3, jsonl=True))
@pytest.mark.parametrize("which", ["results", "samples"])
def test_judge_refuses_fuzzed_lm_eval_folders(tmp_path, capsys, content, which):
    folder = tmp_path / "lm" / "org__m"
    folder.mkdir(parents=True)
    date = "2026-01-01T00-00-00"
    ex = load_examples()[0]
    good = {"results": json.dumps({"model_name": "m", "results": {"csconv_reply": {}}}),
            "samples": json.dumps({"doc": ex.to_doc(), "filtered_resps": ["[Greeting] hi"]})}
    if which == "results":  # a samples file that fails after the results file was read
        good["samples"] = json.dumps({"doc": {"item_id": "nope"}, "filtered_resps": ["x"]})
    good[which] = content
    (folder / f"results_{date}.json").write_bytes(
        good["results"] if isinstance(good["results"], bytes) else good["results"].encode())
    (folder / f"samples_csconv_reply_{date}.jsonl").write_bytes(
        good["samples"] if isinstance(good["samples"], bytes) else good["samples"].encode())
    _assert_bad_input(*_run(["judge", "--candidates", str(tmp_path / "lm"), "--judge",
                             "openai/j", "--dry-run", "--out", str(tmp_path / "out")], capsys))


@pytest.mark.parametrize("content", _cases(4, jsonl=True))
@pytest.mark.parametrize("name", ["judgments.jsonl", "run.json"])
def test_leaderboard_refuses_fuzzed_judgment_folders(tmp_path, capsys, content, name):
    folder = _judgments(tmp_path / "judge")
    if name == "run.json":  # rows that fail after run.json was read
        (folder / "judgments.jsonl").write_text('{"kind": "nope"}\n')
    (folder / name).write_bytes(content)
    _assert_bad_input(*_run(["leaderboard", "--judgments", str(folder), "--out",
                             str(tmp_path / "out"), "--rounds", "5", "--no-items"], capsys))


@pytest.mark.parametrize("content", _cases(5, jsonl=False))
def test_leaderboard_refuses_fuzzed_lm_eval_metrics(tmp_path, capsys, content):
    folder = _judgments(tmp_path / "judge")
    _check(tmp_path, capsys, "lm/org__m/results_2026-01-01T00-00-00.json", content,
           lambda p, t: ["leaderboard", "--judgments", str(folder), "--lm-eval",
                         str(p.parent), "--out", str(t / "out"), "--rounds", "5",
                         "--no-items"])


@pytest.mark.parametrize("content", _cases(6, jsonl=True, extra=CSV))
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_correlate_refuses_fuzzed_human_ratings(tmp_path, capsys, content, suffix):
    folder = _judgments(tmp_path / "judge")
    _check(tmp_path, capsys, f"human{suffix}", content,
           lambda p, t: ["correlate", "--human", str(p), "--judgments", str(folder),
                         "--out", str(t / "out"), "--rounds", "5"])


@pytest.mark.parametrize("content", _cases(7, jsonl=False, extra=YAML))
def test_ablate_refuses_fuzzed_configs(tmp_path, capsys, content):
    _check(tmp_path, capsys, "ablation.yaml", content,
           lambda p, t: ["ablate", "--config", str(p), "--out", str(t / "out"), "--dry-run"])


@pytest.mark.parametrize("content", _cases(8, jsonl=False))
def test_every_command_refuses_a_fuzzed_stage_map(tmp_path, capsys, content, monkeypatch):
    monkeypatch.delenv("CSC_STAGE_MAP", raising=False)
    _check(tmp_path, capsys, "stages.json", content,
           lambda p, _: ["data", "check", "--stage-map", str(p)], may_pass=content == b"{}")


@pytest.mark.parametrize("content", _cases(9, jsonl=False, extra=YAML))
def test_judge_refuses_a_fuzzed_prompts_folder(tmp_path, capsys, content):
    (tmp_path / "prompts" / "t").mkdir(parents=True)
    (tmp_path / "prompts" / "t" / "prompt.j2").write_text("{{ reply }}")
    candidates = tmp_path / "c.jsonl"
    candidates.write_text(json.dumps({"item_id": load_examples()[0].item_id, "model": "m",
                                      "reply": "hi"}) + "\n")
    _check(tmp_path, capsys, "prompts/t/rubric.yaml", content,
           lambda _, t: ["judge", "--candidates", str(candidates), "--judge", "openai/j",
                         "--prompts", str(t / "prompts"), "--dry-run", "--out", str(t / "o")])
