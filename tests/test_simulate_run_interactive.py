"""`csc-harness run --interactive`: the simulate step inside the main job, with stub models."""

from __future__ import annotations

import json

import pytest
from conftest import MINI_CSCONV
from test_simulate_support import judge_answer, role_of, scripted

from csc_harness.cli import main
from csc_harness.llm import StubServer


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _answer(body: dict):
    """Candidate replies, the customer roles (played by the judge model) and both judges."""
    role = role_of(body)
    if role in ("planner", "coach", "customer"):
        return scripted(finished_after=6)(body)
    if body.get("response_format") or role == "judge":  # the turn and conversation judges
        return json.dumps(judge_answer(body))
    return scripted()(body)


@pytest.fixture(scope="module")
def interactive_run(tmp_path_factory):
    pytest.importorskip("sacrebleu")  # the generated setting scores its replies
    tmp = tmp_path_factory.mktemp("interactive")
    data = tmp / "data.json"
    data.write_text(json.dumps(MINI_CSCONV, ensure_ascii=False), encoding="utf-8")
    argv = ["run", "--model", "openai/cand", "--api-base", "", "--judge", "openai/judge",
            "--judge-api-base", "", "--setting", "generated", "--data", str(data),
            "--interactive", "--rounds", "50", "--no-progress",
            "--cache", str(tmp / "cache.sqlite"), "--out", str(tmp / "out")]
    with StubServer(_answer) as stub:
        argv[argv.index("--api-base") + 1] = argv[argv.index("--judge-api-base") + 1] = \
            stub.base_url
        code = main(argv)
        first = len(stub.requests)
        again = main(argv)  # a re-run resumes: nothing is asked again
        return code, again, tmp / "out", stub.requests[:first], len(stub.requests) - first


def test_interactive_run_simulates_conversations_into_out_interactive(interactive_run):
    code, _, out, requests, _ = interactive_run
    assert code == 0
    transcripts = _rows(out / "interactive" / "transcripts.jsonl")
    assert {r["model"] for r in transcripts} == {"openai/cand"}
    assert {r["scenario_id"] for r in transcripts} == {"z1", "e1"}
    assert {r["customer"] for r in transcripts} == {"openai/judge"}  # the first judge plays it
    assert {r["end_reason"] for r in transcripts} == {"customer_ended"}
    judged = _rows(out / "interactive" / "judge" / "conversation" / "judgments.jsonl")
    assert len(judged) == 2 * 3 and {r["status"] for r in judged} == {"ok"}
    assert {r["turn_index"] for r in judged} == {None}
    assert (out / "interactive" / "leaderboard.json").is_file()
    assert {role_of(b) for b in requests} >= {"planner", "coach", "customer", "judge"}


def test_interactive_run_records_the_step_and_keeps_the_turn_judging(interactive_run):
    _, _, out, _, _ = interactive_run
    run = json.loads((out / "run.json").read_text())
    (step,) = [s for s in run["steps"] if s["step"] == "interactive"]
    assert step["dir"] == "interactive" and "2 conversations" in step["line"]
    assert (out / "judge" / "judgments.jsonl").is_file()  # the turn-level judging still ran
    assert (out / "leaderboard.md").is_file()


def test_interactive_run_resumes_without_new_calls(interactive_run):
    _, again, out, _, new_calls = interactive_run
    assert again == 0 and new_calls == 0
    assert len(_rows(out / "interactive" / "transcripts.jsonl")) == 2


def test_the_embedded_demo_run_gets_the_simulate_demo_sizes(tmp_path, monkeypatch):
    """`run --interactive` with no model (the embedded one) must not plan 20 scenarios of
    50 utterances on the 135M model: it takes the simulate demo's sizes."""
    import csc_harness.simulate as simulate_package
    from csc_harness.pipeline import RunOptions, _interactive
    from csc_harness.profiles import EMBEDDED
    from csc_harness.simulate import DEMO

    seen = []

    def fake(opts, *, server=None):
        seen.append(opts.resolved())
        return {"steps": {"conversations": {"n": 1, "new": 1}}}

    monkeypatch.setattr(simulate_package, "simulate", fake)
    _interactive(RunOptions(out=str(tmp_path), interactive=True), (EMBEDDED.model,),
                 (EMBEDDED.model,), None)
    _interactive(RunOptions(out=str(tmp_path), models=("openai/cand",), interactive=True),
                 ("openai/cand",), ("openai/judge",), None)
    demo, named = seen
    assert (demo.scenarios, demo.max_turns, demo.demonstration) == (
        DEMO["scenarios"], DEMO["max_turns"], True)
    assert (named.max_turns, named.demonstration) == (50, False)
