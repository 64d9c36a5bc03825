"""OpenAI-compatible servers through the openai SDK: which calls take it, and that the
server cannot tell it from litellm's path (same body, same answer, same cost)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from csc_harness.llm import Client, Request, StubReply, StubServer
from csc_harness.llm._openai_sdk import serves

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}},
          "required": ["score"], "additionalProperties": False}


@pytest.mark.parametrize(("model", "api_base", "expected"), [
    ("openai/my-local-model", "http://127.0.0.1:8000/v1", True),
    ("openai/gpt-4o-mini", "http://127.0.0.1:8000/v1", True),
    ("hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "http://127.0.0.1:8000/v1", True),
    ("openai/gpt-4o-mini", None, False),  # api.openai.com: litellm's own path
    ("openai/o3-mini", "http://127.0.0.1:8000/v1", False),  # litellm rewrites its params
    ("openai/gpt-5-mini", "http://127.0.0.1:8000/v1", False),
    ("anthropic/claude-sonnet-4-5", "http://127.0.0.1:8000", False),
    ("gpt-4o-mini", "http://127.0.0.1:8000/v1", False),
])
def test_which_calls_go_straight_to_the_sdk(model: str, api_base: str | None,
                                             expected: bool) -> None:
    assert serves(model, api_base) is expected


def test_the_environment_can_send_everything_through_litellm(monkeypatch) -> None:
    monkeypatch.setenv("CSC_HARNESS_OPENAI_SDK", "0")
    assert not serves("openai/my-local-model", "http://127.0.0.1:8000/v1")


def test_the_server_sees_the_same_request_and_the_client_the_same_answer(tmp_path) -> None:
    request = Request(model="openai/gpt-4o-mini",
                      messages=({"role": "system", "content": "Grade it."},
                                {"role": "user", "content": "回复：您好"}),
                      max_tokens=7, stop=("\n\n",), seed=3, top_logprobs=2,
                      response_schema=SCHEMA)
    reply = StubReply('{"score": 4}', prompt_tokens=900, completion_tokens=30)

    async def ask(openai_sdk: bool, base: str):
        async with Client(cache_mode="off", openai_sdk=openai_sdk) as client:
            return await client.complete(replace(request, api_base=base))

    with StubServer(lambda body: reply) as stub:
        direct = asyncio.run(ask(True, stub.base_url))
        through_litellm = asyncio.run(ask(False, stub.base_url))
        sdk_body, litellm_body = stub.requests
    assert sdk_body == litellm_body
    assert sdk_body["model"] == "gpt-4o-mini"
    assert sdk_body["response_format"]["type"] == "json_schema"
    fields = ("text", "response_model", "finish_reason", "prompt_tokens", "completion_tokens",
              "cost_usd", "top_logprobs", "structured", "key")
    assert {f: getattr(direct, f) for f in fields} == \
        {f: getattr(through_litellm, f) for f in fields}
    assert direct.cost_usd == pytest.approx(900 * 1.5e-7 + 30 * 6e-7)  # gpt-4o-mini's list price
