"""``csc-harness check-judge`` end to end through the stub server: four judges, pinned numbers.

The stub judges read what a real judge reads (the quoted dialogue, the reply and its
claimed label) and answer in the rubric's JSON. The good judge knows each item's reference
reply from its dialogue and scores exactly that reply (with its label, where the prompt
shows one) high; the constant judge always answers 3; the random judge hashes what it
sees; the verbosity-loving judge is the good judge plus a taste for longer replies.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from csc_harness.cli import main
from csc_harness.data import load_examples, load_sample
from csc_harness.framework import BY_CODE
from csc_harness.llm import StubReply, StubServer
from csc_harness.quoting import NONCE

DIALOGUE = re.compile(rf"<dialogue-({NONCE})>\n(.*?)\n</dialogue-\1>", re.DOTALL)
REPLY = re.compile(rf"<reply-({NONCE})>\n(.*?)\n</reply-\1>", re.DOTALL)
LINE = re.compile(r"^(?:Customer|Agent(?: \[[^\]]*\])?): (.*)$")
CLAIMED = re.compile(r'labelled it with the strategy "([^"]+)"')
TITLE = re.compile(r"# Rubric: ([^(]+?) \(")
JUDGES = ("openai/good", "openai/constant", "openai/random", "openai/verbose")
TURNS = 21  # supporter turns of the 2 dialogues (en-018, zh-006) --limit 2 picks


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The bundled sample without its agent-first dialogues: every context is unique, so a
    stub judge can tell the item from the dialogue it is shown."""
    from importlib import resources

    import csc_harness.data as data_module

    raw = json.loads((resources.files(data_module.__package__) / "sample"
                      / "csconv_sample.json").read_text(encoding="utf-8"))
    kept = [r for r in raw if r["dialogue"][0]["speaker"] in ("客户", "customer", "user")]
    path = tmp_path_factory.mktemp("data") / "csconv.json"
    path.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    assert len(kept) == len([c for c in load_sample() if c.utterances[0].speaker == "customer"])
    return path


def gold_by_context(path: Path) -> dict[tuple[str, ...], tuple[str, str]]:
    return {tuple(u.text for u in ex.context): (ex.reply, BY_CODE[ex.strategy].name)
            for ex in load_examples(str(path))}


def seen(body: dict) -> tuple[tuple[str, ...], str, str | None, str]:
    """(context texts, reply, claimed strategy name or None, dimension id) of a request."""
    prompt = body["messages"][-1]["content"]
    dialogue = DIALOGUE.search(prompt).group(2).splitlines()
    context = tuple(LINE.match(line).group(1) for line in dialogue if LINE.match(line))
    claimed = CLAIMED.search(prompt)
    dim = TITLE.search(prompt).group(1).strip().lower().replace(" ", "_")
    return context, REPLY.search(prompt).group(2), claimed and claimed.group(1), dim


def make_judge(path: Path):
    gold = gold_by_context(path)

    def is_gold(context, reply, claimed) -> bool:
        text, label = gold[context]
        return reply == text and claimed in (None, label)

    def answer(body: dict) -> StubReply:
        context, reply, claimed, dim = seen(body)
        model = body["model"]
        if model == "good":
            score = 5 if is_gold(context, reply, claimed) else 1
        elif model == "constant":
            score = 3
        elif model == "random":
            digest = hashlib.sha256(f"{context}|{reply}|{claimed}|{dim}".encode()).digest()
            score = 1 + digest[0] % 5
        else:  # verbose: gold 4, gold with more words 5, anything else 1
            text, _label = gold[context]
            longer = reply.startswith(text) and len(reply) > len(text)
            score = 5 if longer else 4 if is_gold(context, reply, claimed) else 1
        return StubReply(json.dumps({"rationale": "Stub verdict.", "score": score}))

    return answer


def args(stub: StubServer, tmp_path: Path, data: Path, *extra: str,
         judges=JUDGES) -> list[str]:
    out = ["check-judge", "--data", str(data), "--limit", "2", "--api-base", stub.base_url,
           "--cache", str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "out"),
           "--no-progress", "--rounds", "200", "--concurrency", "32"]
    for judge in judges:
        out += ["--judge", judge]
    return out + list(extra)


@pytest.fixture(scope="module")
def four_judges(tmp_path_factory, data):
    tmp_path = tmp_path_factory.mktemp("check")
    with StubServer(make_judge(data)) as stub:
        code = main(args(stub, tmp_path, data))
        assert stub.errors == []
        calls = len(stub.requests)
        # the same check into a new folder: every verdict comes from the cache
        again = main(args(stub, tmp_path, data, "--out", str(tmp_path / "again")))
        assert len(stub.requests) == calls and again == code
    result = json.loads((tmp_path / "out" / "judge_check.json").read_text(encoding="utf-8"))
    return code, result, tmp_path, calls


def test_a_failed_judge_makes_exit_code_4_and_every_file_is_written(four_judges):
    code, result, tmp_path, calls = four_judges
    out = tmp_path / "out"
    assert code == 4
    rows = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == TURNS * 6 * 3 * 4  # 6 replies, 3 dimensions, 4 judges
    # wrong-label asks what gold asks where the prompt shows no label: answered from the cache
    assert calls == TURNS * (6 * 3 - 2) * 4
    assert {r["model"] for r in rows} == {f"control:{k}" for k in (
        "gold", "mismatch", "truncated", "generic", "wrong-label", "padded")}
    assert (out / "run.json").is_file()
    assert (out / "judge_check.md").read_text().startswith("# Can this judge be trusted?")


def test_the_result_has_exactly_the_documented_shape(four_judges):
    _code, result, _tmp, _calls = four_judges
    assert set(result) == {"judges", "settings"}
    assert list(result["judges"]) == [*sorted(JUDGES), "panel"]
    entry = result["judges"]["openai/good"]
    assert set(entry) == {"pass", "dimensions"}
    dim = entry["dimensions"]["empathy"]
    assert set(dim) == {"pass", "discrimination", "ci_low", "ci_high", "n", "verdict",
                        "controls"}
    assert set(dim["controls"]["mismatch"]) == {"discrimination", "ci_low", "ci_high", "n"}


def test_the_good_judge_passes_every_dimension(four_judges):
    entry = four_judges[1]["judges"]["openai/good"]
    assert entry["pass"] is True
    assert {d: (v["discrimination"], v["ci_low"], v["n"]) for d, v in
            entry["dimensions"].items()} == {"empathy": (1.0, 1.0, TURNS),
                                             "problem_resolution": (1.0, 1.0, 3 * TURNS),
                                             "strategy_adherence": (1.0, 1.0, 4 * TURNS)}


def test_the_constant_judge_sits_at_one_half_and_fails(four_judges):
    entry = four_judges[1]["judges"]["openai/constant"]
    assert entry["pass"] is False
    assert all((d["discrimination"], d["ci_low"], d["ci_high"], d["pass"]) == (.5, .5, .5, False)
               for d in entry["dimensions"].values())
    assert entry["dimensions"]["empathy"]["verdict"].startswith(
        "cannot tell a reply from another conversation from the right one on empathy")


def test_the_random_judge_fails_near_chance(four_judges):
    entry = four_judges[1]["judges"]["openai/random"]
    got = {d: v["discrimination"] for d, v in entry["dimensions"].items()}
    assert entry["pass"] is False and not any(v["pass"] for v in entry["dimensions"].values())
    # wins + ties / 2 over 1 x 21, 3 x 21 and 4 x 21 pairs
    assert got == pytest.approx({"empathy": 17 / 42, "problem_resolution": 73 / 126,
                                 "strategy_adherence": 95 / 168})


def test_the_verbosity_loving_judge_fails_only_the_padded_rule(four_judges):
    entry = four_judges[1]["judges"]["openai/verbose"]
    assert entry["pass"] is False
    for dim, d in entry["dimensions"].items():
        assert d["discrimination"] == 1.0 and d["ci_low"] == 1.0 and d["pass"] is False
        assert d["controls"]["padded"]["discrimination"] == 0.0
        assert d["verdict"].startswith("prefers a reply padded with empty politeness")


def test_a_rerun_is_answered_from_the_cache_with_the_same_result(four_judges):
    _code, first, tmp_path, _calls = four_judges
    again = json.loads((tmp_path / "again" / "judge_check.json").read_text(encoding="utf-8"))
    assert again == first


def test_only_the_good_judge_and_chosen_controls_exit_0(tmp_path, data, capsys):
    with StubServer(make_judge(data)) as stub:
        main(args(stub, tmp_path, data, "--controls", "generic", "--limit", "2",
                  judges=("openai/good",)))
        code = main(args(stub, tmp_path, data, "--controls", "mismatch", "padded",
                         "--limit", "2", judges=("openai/good",)))
    out = capsys.readouterr().out
    assert code == 0
    assert "openai/good: PASS" in out
    # the folder keeps the first run's generic rows; the check covers this run's controls
    assert "controls: gold, mismatch, padded on " in out
    result = json.loads((tmp_path / "out" / "judge_check.json").read_text(encoding="utf-8"))
    assert result["settings"]["controls"] == ["gold", "mismatch", "padded"]


@pytest.mark.parametrize("extra, message", [
    pytest.param(["--controls", "shouty"], "unknown control 'shouty'", id="unknown-control"),
    pytest.param(["--controls", "none"], "--controls none leaves nothing", id="none"),
    pytest.param(["--limit", "0"], "--limit must be >= 1", id="bad-limit"),
    pytest.param(["--threshold", "1.5"], "--threshold must be in [0, 1)", id="bad-threshold"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, data, capsys, extra, message):
    with StubServer([]) as stub:
        code = main(args(stub, tmp_path, data, *extra, judges=("openai/good",)))
        assert stub.requests == []
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("csc-harness check-judge: error: ")
    assert message in err
