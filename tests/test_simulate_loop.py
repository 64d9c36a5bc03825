"""The conversation loop against a loopback stub: who sees what, and when it stops."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_simulate_support import role_of, scripted

from csc_harness.data import load_sample
from csc_harness.llm import Client, StubServer
from csc_harness.simulate import Cast, RoleModel, Scenario, converse

SCENARIO = Scenario("s1", "账户交易", "en", "A busy teacher.", "Find the missing transfer.",
                    "Hi, my transfer never arrived.", "Sent yesterday.")


def play(stub: StubServer, tmp_path, *, max_turns: int = 50, scenario: Scenario = SCENARIO):
    cast = Cast(RoleModel("openai/cand", stub.base_url, max_tokens=64, temperature=0.0),
                RoleModel("openai/cust", stub.base_url), "openai/cand", max_turns)

    async def go():
        async with Client(cache_path=tmp_path / "c.sqlite", max_tries=1) as client:
            return await converse(scenario, 0, cast, client)

    return asyncio.run(go())


def test_supporter_sees_its_own_replies_and_the_simulated_customer_only(tmp_path):
    with StubServer(scripted(finished_after=6)) as stub:
        row = play(stub, tmp_path)
        supporter = [b for b in stub.requests if role_of(b) == "supporter"]
    last = supporter[-1]["messages"]
    assert [m["role"] for m in last][1:] == ["assistant", "user", "assistant", "user"]
    assert [m["content"] for m in last[1:]] == [
        "Hello, how can I help?", "Hi, my transfer never arrived.",
        "When did you send it?", "OK, the number is [手机号码]."]
    recorded = {u.text for conv in load_sample() for u in conv.utterances
                if u.speaker == "supporter"}
    assert not recorded & {m["content"] for b in supporter for m in b["messages"]}
    assert row["turns"][0] == {"speaker": "supporter", "text": "Hello, how can I help?",
                               "strategy": "GT"}


@pytest.mark.parametrize("supporter, kwargs, reason, turns", [
    pytest.param(lambda body: "[Appreciation and Closure] Thank you, goodbye.", {},
                 "supporter_closed", 1, id="supporter-closes"),
    pytest.param(None, {"finished_after": 6}, "customer_ended", 6, id="customer-ends"),
    pytest.param(None, {}, "max_turns", 7, id="utterance-cap"),
    pytest.param(None, {"customer": "I am not JSON"}, "customer_failed", 3,
                 id="customer-unusable"),
])
def test_each_stop_rule_ends_the_conversation(tmp_path, supporter, kwargs, reason, turns):
    with StubServer(scripted(supporter, **kwargs)) as stub:
        row = play(stub, tmp_path, max_turns=7)
    assert row["end_reason"] == reason
    assert row["n_turns"] == len(row["turns"]) == turns


def test_unusable_customer_answer_is_retried_then_recorded(tmp_path):
    with StubServer(scripted(customer='{"text": ""}')) as stub:
        row = play(stub, tmp_path)
        customer_calls = [b for b in stub.requests if role_of(b) == "customer"]
    assert len(customer_calls) == 3  # the first try and two retries, as new samples
    assert row["end_reason"] == "customer_failed"
    assert "'text' is missing or empty" in row["end_detail"]


def test_reply_without_valid_label_is_kept_and_counted(tmp_path):
    with StubServer(scripted(lambda body: "Sure, let me check.", finished_after=4)) as stub:
        row = play(stub, tmp_path)
    assert row["turns"][0] == {"speaker": "supporter", "text": "Sure, let me check.",
                               "strategy": None}
    assert row["invalid_labels"] == row["supporter_turns"] == 2


def test_customer_roles_never_see_the_recorded_dialogue(tmp_path):
    conv = load_sample()[0]
    with StubServer(scripted(finished_after=6)) as stub:
        from csc_harness.simulate import ScenarioStore, plan_scenarios

        async def go():
            async with Client(cache_path=tmp_path / "c.sqlite") as client:
                planner = RoleModel("openai/cust", stub.base_url)
                (scenario,) = await plan_scenarios([conv], ScenarioStore(tmp_path), client,
                                                   planner)
                cast = Cast(RoleModel("openai/cand", stub.base_url),
                            RoleModel("openai/cust", stub.base_url), "openai/cand")
                return await converse(scenario, 0, cast, client)

        asyncio.run(go())
        roles = [(role_of(b), json.dumps(b["messages"], ensure_ascii=False))
                 for b in stub.requests]
    recorded = [u.text for u in conv.utterances[1:] if u.text != conv.utterances[1].text]
    planner = [text for role, text in roles if role == "planner"]
    assert planner and all(t in planner[0] for t in recorded)  # only the planner reads it
    for role, text in roles:
        if role in ("coach", "customer"):
            assert not any(t in text for t in recorded), role


def _plan(stub: StubServer, tmp_path, limits):
    from csc_harness.simulate import ScenarioStore, plan_scenarios

    async def go():
        async with Client(cache_path=tmp_path / "c.sqlite", max_tries=1) as client:
            return await plan_scenarios([load_sample()[0]], ScenarioStore(tmp_path), client,
                                        RoleModel("openai/cust", stub.base_url),
                                        limits=limits)

    return asyncio.run(go())


def test_a_limited_planner_reads_only_the_dialogues_start(tmp_path):
    from csc_harness.simulate.scenarios import PlannerLimits

    conv = load_sample()[0]
    with StubServer(scripted()) as stub:
        (scenario,) = _plan(stub, tmp_path, PlannerLimits(max_utterances=2))
        (body,) = stub.requests
    prompt = json.dumps(body["messages"], ensure_ascii=False)
    later = [u.text for u in conv.utterances[2:] if u.text not in
             (conv.utterances[0].text, conv.utterances[1].text)]
    assert json.dumps(conv.utterances[1].text, ensure_ascii=False)[1:-1] in prompt
    assert later and not any(json.dumps(t, ensure_ascii=False)[1:-1] in prompt for t in later)
    assert scenario.planner == "openai/cust" and "fallback" not in scenario.source


def test_an_unusable_planner_stops_the_run_unless_a_fallback_is_allowed(tmp_path):
    from csc_harness.errors import DataError
    from csc_harness.simulate.scenarios import PlannerLimits

    conv = load_sample()[0]
    with StubServer(lambda body: '{"persona": ""') as stub, \
            pytest.raises(DataError, match="planner could not write"):
        _plan(stub, tmp_path / "strict", PlannerLimits())
    with StubServer(lambda body: '{"persona": ""') as stub:
        (scenario,) = _plan(stub, tmp_path / "demo", PlannerLimits(fallback=True))
    opening = next(u.text for u in conv.utterances if u.speaker == "customer")
    assert scenario.opening == opening and opening in scenario.goal
    assert scenario.planner is None and "fallback" in scenario.source
    assert scenario.persona  # the customer roles still get a persona to play


def test_a_customer_answer_with_a_raw_line_break_and_no_reason_is_usable(tmp_path):
    """Small models put raw newlines in JSON strings and leave ``reason`` blank: neither
    makes the answer unusable (``reason`` only explains an end)."""
    answer = '{"text": "It is\nstill missing.", "is_dialogue_finished": true, "reason": ""}'
    with StubServer(scripted(customer=answer)) as stub:
        row = play(stub, tmp_path)
    assert row["end_reason"] == "customer_ended" and row["end_detail"] == "no reason given"
    assert row["turns"][-1] == {"speaker": "customer", "text": "It is still missing.",
                                "strategy": None}
