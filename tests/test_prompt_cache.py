"""Anthropic prompt caching on online calls: breakpoints on the constant prefix and on the
dialogue shared by later turns, sent through litellm's real HTTP path to a loopback stub
that plays Anthropic's prompt cache, and cache reads/writes priced at their own prices."""

from __future__ import annotations

import itertools
import json

import pytest
from test_judge_support import read_rows, run

from csc_harness.data import load_examples
from csc_harness.quoting import nonce_for
from csc_harness.judge import JudgeConfig
from csc_harness.judge.candidates import Candidate
from csc_harness.llm import StubReply
from csc_harness.llm._prompt_cache import (
    MIN_DIALOGUE_PREFIX_CHARS,
    PrefixLearner,
    with_breakpoints,
)
from csc_harness.llm.batch_stub import BatchStubServer

CLAUDE = "anthropic/claude-sonnet-4-5"
EPHEMERAL = {"type": "ephemeral"}
RUBRIC = "# Rubric\n" + "level text, the same in every prompt\n" * 80


def prompt(conversation: str, turns: int, reply: str = "the reply") -> list[dict]:
    nonce = nonce_for(conversation, [conversation, reply])
    lines = "".join(f"Customer: line {i} of {conversation}\n" for i in range(turns))
    return [{"role": "system", "content": "You grade replies."},
            {"role": "user", "content": f"{RUBRIC}Topic: <topic-{nonce}>{conversation}"
             f"</topic-{nonce}>\n<dialogue-{nonce}>\n{lines}</dialogue-{nonce}>\n"
             f"# Grade\n<reply-{nonce}>{reply}</reply-{nonce}>"}]


def marks(messages: list[dict]) -> int:
    return sum("cache_control" in block for m in messages if isinstance(m["content"], list)
               for block in m["content"])


def texts(message: dict) -> list[str]:
    return [block["text"] for block in message["content"]]


def test_a_later_turn_reads_the_earlier_turns_dialogue_and_writes_its_own():
    learner = PrefixLearner()
    for conversation in ("c1", "c2"):  # two conversations teach the constant prefix
        with_breakpoints(prompt(conversation, 3), learner)
    first = with_breakpoints(prompt("c3", 3), learner)
    later = with_breakpoints(prompt("c3", 5), learner)
    assert "".join(texts(later[1])) == prompt("c3", 5)[1]["content"]  # byte-identical
    constant, earlier, new, rest = texts(later[1])
    assert constant == texts(first[1])[0] and earlier == texts(first[1])[1]
    assert new == "Customer: line 3 of c3\nCustomer: line 4 of c3\n"
    assert rest.startswith("</dialogue-")
    assert [("cache_control" in b) for b in later[1]["content"]] == [True, True, True, False]
    assert marks(later) == 4  # Anthropic's maximum: system, constant, earlier, this turn


def test_another_reply_to_the_same_turn_reads_the_whole_dialogue_block():
    learner = PrefixLearner()
    for conversation in ("c1", "c2"):
        with_breakpoints(prompt(conversation, 3), learner)
    one = with_breakpoints(prompt("c3", 4, "reply of model a"), learner)
    two = with_breakpoints(prompt("c3", 4, "reply of model b"), learner)
    assert texts(one[1])[:2] == texts(two[1])[:2] and len(two[1]["content"]) == 3


def test_no_dialogue_breakpoint_below_the_length_where_caching_can_pay():
    short = [{"role": "user", "content": "<dialogue-0123456789ab>\nhi\n</dialogue-0123456789ab>"}]
    assert len(short[0]["content"]) < MIN_DIALOGUE_PREFIX_CHARS
    assert with_breakpoints(short, PrefixLearner()) == short


def joint_verdict(body: dict) -> StubReply:
    return StubReply(json.dumps({d: {"rationale": "Fine.", "score": 4} for d in (
        "empathy", "problem_resolution", "strategy_adherence")}), completion_tokens=40)


def list_price(usage: dict) -> float:
    """claude-sonnet-4-5 list prices (litellm's map): input 3e-6, cache read 3e-7, cache
    write 3.75e-6, output 1.5e-5 per token."""
    return (usage["input_tokens"] * 3e-6 + usage["cache_read_input_tokens"] * 3e-7
            + usage["cache_creation_input_tokens"] * 3.75e-6 + usage["output_tokens"] * 1.5e-5)


def test_online_calls_carry_breakpoints_and_price_cache_reads_and_writes(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    turns = [e for e in load_examples() if e.conversation_id == "zh-001"]
    cands = [Candidate(e, "model-a", e.reply, e.strategy) for e in turns]
    with BatchStubServer(joint_verdict, prompt_cache=True) as stub:
        config = JudgeConfig(judges=(CLAUDE,), api_base=stub.root_url, mode="joint")
        result = run(config, cands, tmp_path / "out", concurrency=1)
        bodies, usages = stub.anthropic_bodies, stub.usages
    assert result.exit_code == 0 and stub.message_calls == len(turns) >= 4
    assert {r["status"] for r in read_rows(tmp_path / "out")} == {"ok"}
    assert all(b["system"][-1]["cache_control"] == EPHEMERAL for b in bodies)
    assert all(marks([{"content": b["system"]}, *b["messages"]]) <= 4 for b in bodies)
    later = [marks(b["messages"]) for b in bodies[2:]]
    assert min(later) == 3  # constant prefix, earlier turn's dialogue, this turn's
    # each later turn reads more than the constant part: the earlier turns' dialogue
    reads = [u["cache_read_input_tokens"] for u in usages]
    assert all(b > a for a, b in itertools.pairwise(reads[2:]))
    session = json.loads((tmp_path / "out" / "run.json").read_text())["session"]
    read = sum(reads)
    written = sum(u["cache_creation_input_tokens"] for u in usages)
    prompt_tokens = sum(u["input_tokens"] + u["cache_read_input_tokens"]
                        + u["cache_creation_input_tokens"] for u in usages)
    assert session["cached_prompt_tokens"] == read and session["cache_write_tokens"] == written
    assert session["prompt_tokens"] == prompt_tokens
    assert session["provider_cache_share"] == pytest.approx(read / prompt_tokens, abs=1e-4)
    assert session["cost_usd"] == pytest.approx(sum(map(list_price, usages)), rel=1e-6)


def test_two_turns_of_one_conversation_teach_only_the_constant_part():
    learner = PrefixLearner()
    with_breakpoints(prompt("c1", 3), learner)
    sent = with_breakpoints(prompt("c1", 4), learner)
    assert learner.prefixes == [RUBRIC]  # not the dialogue both turns quote
    assert texts(sent[1])[0] == RUBRIC
