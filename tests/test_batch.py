"""--batch: provider batch APIs (OpenAI Files + Batch via litellm, Anthropic Message Batches
via the anthropic SDK) against a loopback stub speaking their wire formats."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_judge_support import candidates, fake_judge, read_rows, run

from csc_harness.judge import JudgeConfig
from csc_harness.llm import Client, StubReply, _litellm
from csc_harness.llm.batch import BATCHES_FILE
from csc_harness.llm.batch_stub import BatchStubServer

GPT = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4-5"


def chat_calls(stub) -> int:
    return sum(path.endswith("/chat/completions") for path in stub.paths)


def judge(tmp_path, stub, model=GPT, base=None, **client):
    config = JudgeConfig(judges=(model,), api_base=base or stub.base_url)
    client.setdefault("batch", True)
    client.setdefault("batch_poll_s", 0.01)
    return run(config, candidates(3), tmp_path / "out", **client)


def test_an_openai_batch_run_fills_rows_at_the_batch_price_with_no_online_call(tmp_path):
    with BatchStubServer(fake_judge, polls=2) as stub:
        result = judge(tmp_path, stub)
    rows = read_rows(tmp_path / "out")
    assert result.exit_code == 0 and len(rows) == 3 * 2 * 3
    assert {r["status"] for r in rows} == {"ok"} and not any(r["cached"] for r in rows)
    assert stub.batch_creates == 1 and chat_calls(stub) == 0
    row = rows[0]
    want = _litellm.cost_of(GPT, row["prompt_tokens"], row["completion_tokens"], batch=True)
    online = _litellm.cost_of(GPT, row["prompt_tokens"], row["completion_tokens"])
    assert row["cost_usd"] == pytest.approx(want) and want == pytest.approx(online / 2)
    state = json.loads((tmp_path / "out" / BATCHES_FILE).read_text())
    assert [b["status"] for b in state["batches"]] == ["collected"]
    assert len(state["batches"][0]["keys"]) == 18


def test_a_finished_batch_run_re_run_makes_no_provider_request(tmp_path):
    with BatchStubServer(fake_judge) as stub:
        judge(tmp_path, stub)
        seen = len(stub.requests) + len(stub.paths)
        (tmp_path / "out" / "judgments.jsonl").unlink()  # rows gone, answers cached
        result = judge(tmp_path, stub)
        assert len(stub.requests) + len(stub.paths) == seen
    assert result.exit_code == 0 and len(read_rows(tmp_path / "out")) == 18


def test_a_killed_run_resumes_polling_the_submitted_batch_instead_of_paying_twice(tmp_path):
    with BatchStubServer(fake_judge, polls=10**9) as stub:
        config = JudgeConfig(judges=(GPT,), api_base=stub.base_url)

        async def killed():
            async with Client(cache_path=tmp_path / "out-cache.sqlite", batch=True,
                              batch_poll_s=0.01) as client:
                from csc_harness.judge import run_judgments

                task = asyncio.ensure_future(run_judgments(
                    config, candidates(3), tmp_path / "out", client=client, progress=False))
                for _ in range(1200):  # "kill" it once the batch is submitted
                    if (tmp_path / "out" / BATCHES_FILE).is_file() or task.done():
                        break
                    await asyncio.sleep(0.05)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(killed())
        assert json.loads((tmp_path / "out" / BATCHES_FILE).read_text())["batches"]
        stub.polls = 0
        result = run(config, candidates(3), tmp_path / "out", batch=True, batch_poll_s=0.01)
    assert result.exit_code == 0 and stub.batch_creates == 1 and chat_calls(stub) == 0
    assert {r["status"] for r in read_rows(tmp_path / "out")} == {"ok"}


def test_failed_batch_requests_fall_back_to_online_calls(tmp_path):
    with BatchStubServer(fake_judge) as stub:
        config = JudgeConfig(judges=(GPT,), api_base=stub.base_url)
        from csc_harness.judge.plan import Plan
        from csc_harness.judge.rubrics import load_rubrics

        plan = Plan(config, candidates(3), load_rubrics(None))
        keys = [Client(cache_mode="off").cache_key(plan.render(job)) for job in plan]
        stub.fail_ids = set(keys[:2])
        result = judge(tmp_path, stub)
    rows = read_rows(tmp_path / "out")
    assert result.exit_code == 0 and {r["status"] for r in rows} == {"ok"}
    assert stub.batch_creates == 1 and chat_calls(stub) == 2


def verdict(body: dict) -> StubReply:
    return StubReply('{"rationale": "The reply answers the customer.", "score": 4}',
                     prompt_tokens=1200)


def test_an_anthropic_message_batch_answers_with_cache_breakpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    with BatchStubServer(verdict) as stub:
        result = judge(tmp_path, stub, model=CLAUDE, base=stub.root_url)
    rows = read_rows(tmp_path / "out")
    assert result.exit_code == 0 and {r["status"] for r in rows} == {"ok"}
    assert stub.batch_creates == 1 and stub.message_calls == 0
    params = stub.anthropic_bodies[-1]
    assert params["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert params["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    row = rows[0]
    assert row["cost_usd"] == pytest.approx(_litellm.cost_of(
        CLAUDE, row["prompt_tokens"], row["completion_tokens"], cached=1200, batch=True))


def test_breakpoints_mark_the_system_prompt_and_the_learned_constant_prefix():
    from csc_harness.llm._prompt_cache import PrefixLearner, with_breakpoints

    rubric = "# Rubric\n" + "level text\n" * 100
    learner = PrefixLearner()
    sent = [with_breakpoints([{"role": "system", "content": "judge"},
                              {"role": "user", "content": rubric + f"dialogue {i}"}], learner)
            for i in range(3)]
    assert sent[0][1]["content"] == rubric + "dialogue 0"  # nothing learned yet
    for messages in sent[1:]:
        assert messages[0]["content"][0]["cache_control"] == {"type": "ephemeral"}
        assert messages[1]["content"][0] == {"type": "text", "text": rubric,
                                             "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize("usage, expected", [
    pytest.param({"prompt_tokens": 2000, "prompt_tokens_details": {"cached_tokens": 1536}},
                 (1536, None), id="openai"),
    pytest.param({"prompt_tokens": 2000, "cache_read_input_tokens": 1400,
                  "cache_creation_input_tokens": 0}, (1400, 0), id="anthropic"),
    pytest.param({"prompt_tokens": 10}, (None, None), id="none"),
])
def test_cached_prompt_tokens_are_read_from_the_usage_block(usage, expected):
    assert _litellm.cache_tokens(usage) == expected


def test_cached_tokens_are_priced_at_the_cache_read_price():
    full = _litellm.cost_of(GPT, 2000, 100)
    cached = _litellm.cost_of(GPT, 2000, 100, cached=1536)
    assert cached == pytest.approx(full - 1536 * (1.5e-07 - 7.5e-08))


def test_a_batch_run_renders_each_job_once_and_counts_no_batch_answer_as_a_cache_hit(
        tmp_path, monkeypatch):
    from csc_harness.judge.plan import Plan

    renders = []
    original = Plan.render
    monkeypatch.setattr(Plan, "render", lambda self, job: renders.append(1) or original(
        self, job))
    with BatchStubServer(fake_judge) as stub:
        result = judge(tmp_path, stub)
    session = json.loads((tmp_path / "out" / "run.json").read_text())["session"]
    assert result.exit_code == 0 and len(renders) == 18
    assert session["cache_hits"] == 0 and session["batch_calls"] == session["calls"] == 18
