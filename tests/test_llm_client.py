"""Client over the real HTTP paths, against the loopback StubServer.

Each test scripts the server, runs one event loop with ``asyncio.run`` and checks what the
server saw (bodies, timing, in-flight count) and what the client returned or raised. Every
test runs twice: with OpenAI-compatible calls sent through the openai SDK (the default, see
``csc_harness/llm/_openai_sdk.py``) and through litellm (the path of every other provider).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from csc_harness.errors import CacheMiss, ProviderError
from csc_harness.llm import (
    Client,
    ProviderCallError,
    Request,
    Response,
    StubReply,
    StubServer,
    _retry,
)

FAKE_KEY = "sk-test-csc-FAKE-KEY-0123456789abcdef"
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}},
          "required": ["score"], "additionalProperties": False}


@pytest.fixture(autouse=True, params=["openai-sdk", "litellm"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CSC_HARNESS_OPENAI_SDK", "1" if request.param == "openai-sdk" else "0")
    return request.param


def make_client(tmp_path: Path, **options: Any) -> Client:
    settings: dict[str, Any] = {"cache_path": tmp_path / "llm.sqlite", "api_key": FAKE_KEY,
                                "backoff_base": 0.01, "backoff_max": 1.0, "timeout": 5.0}
    settings.update(options)
    return Client(**settings)


def ask(stub: StubServer, text: str = "Rate this reply.", **fields: Any) -> Request:
    fields.setdefault("model", "openai/judge")
    return Request(messages=({"role": "user", "content": text},), api_base=stub.base_url,
                   **fields)


def run(client: Client, *requests: Request) -> list[Response]:
    async def go() -> list[Response]:
        return list(await asyncio.gather(*(client.complete(r) for r in requests)))

    return asyncio.run(go())


def fail(client: Client, request: Request) -> BaseException:
    with pytest.raises((ProviderError, CacheMiss)) as info:
        run(client, request)
    return info.value


# -- success ----------------------------------------------------------------------------
def test_an_answer_records_what_the_provider_said(tmp_path: Path) -> None:
    reply = StubReply(text='{"score": 4}', model="judge-2026-01-01", prompt_tokens=21,
                      completion_tokens=5)
    with StubServer([reply]) as stub:
        client = make_client(tmp_path)
        request = ask(stub, max_tokens=50, temperature=0.0, seed=7, stop=("END",))
        [response] = run(client, request)
    assert response.text == '{"score": 4}'
    assert response.response_model == "judge-2026-01-01"  # as answered, not as asked
    assert (response.prompt_tokens, response.completion_tokens) == (21, 5)
    assert response.finish_reason == "stop" and response.refusal is None
    assert not response.cached and response.attempts == 1 and response.latency_s > 0
    assert response.key == client.cache_key(request)
    [body] = stub.requests
    assert body["model"] == "judge" and body["messages"] == list(request.messages)
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (50, 0.0, 7)
    assert body["stop"] == ["END"]
    assert "response_format" not in body and "logprobs" not in body
    stats = client.stats
    assert (stats.calls, stats.attempts, stats.prompt_tokens, stats.completion_tokens) == (
        1, 1, 21, 5)


def test_no_key_needed_for_a_local_openai_compatible_server(tmp_path: Path) -> None:
    with StubServer(["fine"]) as stub:
        [response] = run(make_client(tmp_path, api_key=None), ask(stub))
    assert response.text == "fine"


def test_litellm_is_not_imported_with_the_package() -> None:
    code = "import sys, csc_harness.llm; assert 'litellm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   cwd=Path(__file__).resolve().parents[1])


# -- retries ----------------------------------------------------------------------------
def test_429_waits_for_retry_after_then_succeeds(tmp_path: Path) -> None:
    script = [StubReply(status=429, headers={"Retry-After": "0.3"}), "fine"]
    with StubServer(script) as stub:
        client = make_client(tmp_path)
        [response] = run(client, ask(stub))
        gap = stub.request_times[1] - stub.request_times[0]
    assert response.text == "fine" and response.attempts == 2
    assert client.stats.retries == 1
    # backoff_base is 0.01 s, so only the header explains a wait this long
    assert 0.3 <= client.stats.backoff_s <= 0.3 * 1.1
    assert 0.29 <= gap < 1.5


def test_retry_after_is_capped_by_backoff_max(tmp_path: Path) -> None:
    script = [StubReply(status=429, headers={"Retry-After": "30"}), "fine"]
    with StubServer(script) as stub:
        start = time.monotonic()
        [response] = run(make_client(tmp_path, backoff_max=0.1), ask(stub))
    assert response.text == "fine" and time.monotonic() - start < 3


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(tmp_path: Path, status: int) -> None:
    with StubServer([StubReply(status=status), "fine"]) as stub:
        [response] = run(make_client(tmp_path), ask(stub))
        assert len(stub.requests) == 2
    assert response.text == "fine"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(tmp_path: Path, status: int) -> None:
    with StubServer([StubReply(status=status, text="nope"), "unused"]) as stub:
        client = make_client(tmp_path)
        error = fail(client, ask(stub))
        assert len(stub.requests) == 1
        base_url = stub.base_url
    assert isinstance(error, ProviderCallError) and error.status == status
    assert not error.retryable and client.stats.errors == 1
    message = str(error)
    assert "'openai/judge'" in message and base_url in message and "\n" not in message


def test_tries_are_bounded_by_max_tries(tmp_path: Path) -> None:
    with StubServer(lambda body: StubReply(status=500)) as stub:
        client = make_client(tmp_path, max_tries=3)
        error = fail(client, ask(stub))
        assert len(stub.requests) == 3
    assert "failed after 3 tries" in str(error)
    assert (client.stats.retries, client.stats.errors, client.stats.attempts) == (2, 1, 3)


def test_a_slow_server_times_out_and_is_retried_until_max_tries(tmp_path: Path) -> None:
    with StubServer(lambda body: StubReply(delay=2.0)) as stub:
        client = make_client(tmp_path, timeout=0.3, max_tries=2)
        start = time.monotonic()
        error = fail(client, ask(stub))
        elapsed = time.monotonic() - start
        assert len(stub.requests) == 2
    assert isinstance(error, ProviderCallError) and error.retryable and error.attempts == 2
    assert elapsed < 2.0 * 2  # gave up on each try before the server answered


def test_a_timeout_then_an_answer_succeeds(tmp_path: Path) -> None:
    with StubServer([StubReply(delay=1.5), "fine"]) as stub:
        [response] = run(make_client(tmp_path, timeout=0.3), ask(stub))
    assert response.text == "fine" and response.attempts == 2


def test_connection_refused_is_retried_then_reported_as_a_connection_failure(
        tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    request = Request(model="openai/judge", messages=({"role": "user", "content": "x"},),
                      api_base=f"http://127.0.0.1:{port}/v1")
    client = make_client(tmp_path, max_tries=3)
    error = fail(client, request)
    assert client.stats.attempts == 3 and f"127.0.0.1:{port}" in str(error)
    assert "connection failed" in str(error) and "HTTP 500" not in str(error)


def test_a_missing_provider_key_is_not_retried(tmp_path: Path) -> None:
    client = make_client(tmp_path, api_key=None, max_tries=4)
    request = Request(model="anthropic/claude-judge", messages=({"role": "user", "content": "x"},))
    error = fail(client, request)
    assert client.stats.attempts == 1 and "anthropic/claude-judge" in str(error)


def test_garbage_from_the_server_is_an_error_not_an_answer(tmp_path: Path) -> None:
    with StubServer(lambda body: StubReply(raw="<html>oops")) as stub:
        error = fail(make_client(tmp_path, max_tries=2), ask(stub))
    assert isinstance(error, ProviderError)


# -- cache ------------------------------------------------------------------------------
def test_a_cache_hit_makes_no_request_and_costs_nothing_new(tmp_path: Path) -> None:
    reply = StubReply(text="4", prompt_tokens=1000, completion_tokens=100)
    with StubServer([reply]) as stub:
        request = ask(stub, model="openai/gpt-4o-mini")
        [first] = run(make_client(tmp_path), request)
        second_client = make_client(tmp_path)
        [second] = run(second_client, request)
        assert len(stub.requests) == 1
    assert second.cached and second.latency_s == 0 and second.text == "4"
    assert second.cost_usd == first.cost_usd and first.cost_usd  # original cost kept
    stats = second_client.stats
    assert (stats.cache_hits, stats.calls, stats.cost_usd, stats.prompt_tokens) == (1, 0, 0, 0)


def test_identical_concurrent_requests_make_one_call(tmp_path: Path) -> None:
    with StubServer([StubReply(text="once", delay=0.2)]) as stub:
        client = make_client(tmp_path)
        request = ask(stub)
        responses = run(client, *[request] * 5)
        assert len(stub.requests) == 1
    assert [r.text for r in responses] == ["once"] * 5
    assert client.stats.calls == 1 and client.stats.cache_hits == 4


def test_replay_returns_cached_answers(tmp_path: Path) -> None:
    with StubServer(["recorded"]) as stub:
        request = ask(stub)
        run(make_client(tmp_path), request)
        [replayed] = run(make_client(tmp_path, cache_mode="replay"), request)
        assert len(stub.requests) == 1
    assert replayed.cached and replayed.text == "recorded"


def test_replay_miss_raises_cache_miss_without_calling(tmp_path: Path) -> None:
    with StubServer(["unused"]) as stub:
        error = fail(make_client(tmp_path, cache_mode="replay"), ask(stub))
        assert stub.requests == []
    assert isinstance(error, CacheMiss)
    assert "'openai/judge'" in str(error) and "replay mode forbids" in str(error)


def test_off_mode_always_calls(tmp_path: Path) -> None:
    with StubServer(["a", "b"]) as stub:
        client = make_client(tmp_path, cache_mode="off")
        request = ask(stub)
        run(client, request)
        run(client, request)
        assert len(stub.requests) == 2
    assert not (tmp_path / "llm.sqlite").exists()


@pytest.mark.parametrize("bad", [
    pytest.param(StubReply(refusal="I can't judge this"), id="refusal"),
    pytest.param(StubReply(text="partial", finish_reason="content_filter"), id="content-filter"),
    pytest.param(StubReply(text=""), id="empty"),
    pytest.param(StubReply(text="  \n "), id="blank"),
])
def test_refusals_and_empty_answers_are_returned_but_not_cached(
        tmp_path: Path, bad: StubReply) -> None:
    with StubServer([bad, "real answer"]) as stub:
        client = make_client(tmp_path)
        request = ask(stub)
        [first] = run(client, request)
        [second] = run(client, request)
        assert len(stub.requests) == 2
    assert not second.cached and second.text == "real answer"
    if bad.refusal or bad.finish_reason == "content_filter":
        assert first.refusal


def test_errors_are_not_cached(tmp_path: Path) -> None:
    with StubServer([StubReply(status=400), "fine"]) as stub:
        client = make_client(tmp_path)
        fail(client, ask(stub))
        [response] = run(client, ask(stub))
    assert response.text == "fine" and not response.cached


def test_prefetch_serves_a_replay_from_memory(tmp_path: Path) -> None:
    with StubServer(lambda body: body["messages"][0]["content"]) as stub:
        requests = [ask(stub, f"item {i}") for i in range(20)]
        run(make_client(tmp_path), *requests)
        replay = make_client(tmp_path, cache_mode="replay")
        assert len(replay.prefetch(requests)) == 20
        responses = run(replay, *requests)
    assert [r.text for r in responses] == [f"item {i}" for i in range(20)]
    assert replay.stats.cache_hits == 20


def test_prefetched_misses_are_called_once_then_hit(tmp_path: Path) -> None:
    with StubServer(lambda body: body["messages"][0]["content"]) as stub:
        requests = [ask(stub, f"item {i}") for i in range(6)]
        run(make_client(tmp_path), *requests[:3])
        client = make_client(tmp_path)
        assert len(client.prefetch(requests)) == 3
        run(client, *requests)
        again = run(client, *requests)
        assert len(stub.requests) == 6
    assert all(r.cached for r in again)
    assert (client.stats.calls, client.stats.cache_hits) == (3, 9)


# -- structured output and logprobs -----------------------------------------------------
@pytest.mark.parametrize("status", [pytest.param(400, id="400"),
                                    pytest.param(500, id="500-as-llama.cpp-answers")])
def test_json_schema_rejected_downgrades_to_json_object_and_remembers(
        tmp_path: Path, status: int) -> None:
    script = [StubReply(status=status, text="response_format json_schema is not supported"),
              '{"score": 3}', '{"score": 5}']
    with StubServer(script) as stub:
        client = make_client(tmp_path)
        [first] = run(client, ask(stub, response_schema=SCHEMA))
        [second] = run(client, ask(stub, "another", response_schema=SCHEMA))
        formats = [body.get("response_format") for body in stub.requests]
    assert formats == [
        {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA,
                                                "strict": True}},
        {"type": "json_object", "schema": SCHEMA},
        {"type": "json_object", "schema": SCHEMA},  # remembered: no second rejection
    ]
    assert first.structured == second.structured == "json_object"
    assert client.stats.retries == 0


def test_both_forms_rejected_falls_back_to_no_response_format(tmp_path: Path) -> None:
    script = [StubReply(status=400, text="unknown response_format type json_schema"),
              StubReply(status=400, text="response_format is not supported"), '{"score": 2}']
    with StubServer(script) as stub:
        [response] = run(make_client(tmp_path), ask(stub, response_schema=SCHEMA))
        assert "response_format" not in stub.requests[-1]
    assert response.structured == "none" and response.text == '{"score": 2}'


def test_an_explicit_form_is_never_downgraded(tmp_path: Path) -> None:
    script = [StubReply(status=400, text="response_format json_schema is not supported")]
    with StubServer(script) as stub:
        fail(make_client(tmp_path, structured="json_schema"), ask(stub, response_schema=SCHEMA))
        assert len(stub.requests) == 1


@pytest.mark.parametrize("mode,expected", [
    pytest.param("json_object", {"type": "json_object", "schema": SCHEMA}, id="json_object"),
    pytest.param("none", None, id="none"),
])
def test_explicit_modes_send_one_form(tmp_path: Path, mode: str, expected: dict | None) -> None:
    with StubServer(["{}"]) as stub:
        run(make_client(tmp_path, structured=mode), ask(stub, response_schema=SCHEMA))
        assert stub.requests[0].get("response_format") == expected


@pytest.mark.parametrize("form,provider,weaker", [
    pytest.param("json_schema", "openai", "json_object", id="openai-schema"),
    pytest.param("json_object", "openai", "none", id="openai-object"),
    pytest.param("json_schema", "anthropic", "none", id="anthropic-skips-json_object"),
    pytest.param("none", "openai", None, id="nothing-weaker"),
])
def test_downgrade_order(form: str, provider: str, weaker: str | None) -> None:
    from csc_harness.llm._routes import next_form

    assert next_form(form, provider) == weaker


def test_top_logprobs_are_requested_and_parsed(tmp_path: Path) -> None:
    logprobs = [[("4", -0.05), ("5", -3.1), ("3", -4.0)], [("}", -0.01)]]
    with StubServer([StubReply(text="4}", logprobs=logprobs)]) as stub:
        [response] = run(make_client(tmp_path), ask(stub, top_logprobs=3))
        body = stub.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert response.top_logprobs == logprobs


def test_top_logprobs_are_none_when_the_server_sends_none(tmp_path: Path) -> None:
    with StubServer(["4"]) as stub:
        [response] = run(make_client(tmp_path), ask(stub, top_logprobs=3))
    assert response.top_logprobs is None


def test_a_server_rejecting_logprobs_is_asked_without_them(tmp_path: Path) -> None:
    script = [StubReply(status=400, text="logprobs are not supported"), "4"]
    with StubServer(script) as stub:
        [response] = run(make_client(tmp_path), ask(stub, top_logprobs=3))
        assert "logprobs" not in stub.requests[1]
    assert response.text == "4" and response.top_logprobs is None


# -- cost -------------------------------------------------------------------------------
def test_cost_is_unknown_for_an_unpriced_model(tmp_path: Path) -> None:
    with StubServer([StubReply(prompt_tokens=100, completion_tokens=10)]) as stub:
        client = make_client(tmp_path)
        [response] = run(client, ask(stub, model="openai/my-local-judge"))
    assert response.cost_usd is None
    assert client.stats.unknown_cost_calls == 1 and client.stats.cost_usd == 0


def test_cost_of_a_priced_model_matches_the_price_map(tmp_path: Path) -> None:
    reply = StubReply(prompt_tokens=1000, completion_tokens=100, model="gpt-4o-mini")
    with StubServer([reply]) as stub:
        client = make_client(tmp_path)
        [response] = run(client, ask(stub, model="openai/gpt-4o-mini"))
    expected = client.price("gpt-4o-mini", 1000, 100)
    assert expected is not None and expected > 0
    assert response.cost_usd == pytest.approx(expected)
    assert client.stats.cost_usd == pytest.approx(expected)


@pytest.mark.parametrize("model", ["openai/my-local-judge", "hosted_vllm/nobody-knows"])
def test_price_is_none_for_unknown_models(tmp_path: Path, model: str) -> None:
    assert make_client(tmp_path).price(model, 1000, 100) is None


def test_count_tokens_counts_and_falls_back(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    messages = [{"role": "user", "content": "How can I help you with your order today?"}]
    assert 5 < client.count_tokens("openai/gpt-4o-mini", messages) < 40
    assert client.count_tokens("openai/my-local", [{"role": "user", "content": object()}]) >= 1


# -- keys -------------------------------------------------------------------------------
def test_the_api_key_never_reaches_files_logs_or_errors(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    script = [StubReply(status=429, headers={"Retry-After": "0"}), "fine",
              StubReply(status=401, text=f"Incorrect API key provided: {FAKE_KEY}"),
              StubReply(refusal="no")]
    errors: list[str] = []
    with StubServer(script) as stub:
        client = make_client(tmp_path)
        run(client, ask(stub, "one", response_schema=SCHEMA, top_logprobs=2))
        errors.append(str(fail(client, ask(stub, "two"))))
        run(client, ask(stub, "three"))
        assert FAKE_KEY not in repr(stub.requests)
    asyncio.run(client.aclose())
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert written and FAKE_KEY.encode() not in written
    out, err = capfd.readouterr()
    for text in [caplog.text, out, err, *errors, repr(client)]:
        assert FAKE_KEY not in text and FAKE_KEY[8:] not in text
    assert "***" in errors[0]


ENV_KEY = "envkey-FAKE-0123456789-not-key-shaped"


@pytest.mark.parametrize("url", [
    pytest.param("http://user:{key}@127.0.0.1:{port}/v1", id="userinfo"),
    pytest.param("http://:{key}@127.0.0.1:{port}/v1", id="password-only"),
    pytest.param("http://127.0.0.1:{port}/v1?api_key={key}", id="query-api_key"),
    pytest.param("http://127.0.0.1:{port}/v1?key={key}", id="query-key"),
])
def test_a_key_in_the_api_base_url_is_refused_before_any_call(tmp_path: Path, url: str) -> None:
    from csc_harness.errors import UserError

    with StubServer(["fine"]) as stub:
        request = ask(stub)
        base = url.format(key=FAKE_KEY, port=stub.port)
        with pytest.raises(UserError, match="environment variable") as info:
            run(make_client(tmp_path), Request(model="openai/judge",
                                               messages=request.messages, api_base=base))
        assert stub.requests == []
    assert FAKE_KEY not in str(info.value) and "\n" not in str(info.value)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert FAKE_KEY.encode() not in written


def test_a_url_without_credentials_is_accepted() -> None:
    _retry.check_api_base("https://example.openai.azure.com/v1?api-version=2024-06-01")
    _retry.check_api_base("http://127.0.0.1:8000/v1")


def test_judge_refuses_a_key_in_api_base_with_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_judge_cli import candidate_file

    from csc_harness.cli import main

    with StubServer(["fine"]) as stub:
        code = main(["judge", "--candidates", str(candidate_file(tmp_path)), "--judge",
                     "openai/judge", "--api-base",
                     f"http://u:{FAKE_KEY}@127.0.0.1:{stub.port}/v1",
                     "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "out"),
                     "--no-progress"])
        assert stub.requests == []
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "environment variable" in err
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert FAKE_KEY.encode() not in written and FAKE_KEY not in err


def test_keys_from_the_environment_and_the_client_are_redacted_from_errors_and_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", ENV_KEY)
    script = [StubReply(status=400, text=f"bad request from {ENV_KEY} / {FAKE_KEY}"),
              f"your key is {ENV_KEY}, and {FAKE_KEY}"]
    with StubServer(script) as stub:
        client = make_client(tmp_path)
        error = str(fail(client, ask(stub, "one")))
        [answer] = run(client, ask(stub, "two"))
    asyncio.run(client.aclose())
    for text in (error, answer.text):
        assert ENV_KEY not in text and FAKE_KEY not in text and "***" in text
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert ENV_KEY.encode() not in written


def test_redact_hides_explicit_and_key_shaped_secrets() -> None:
    text = "bad key sk-proj-abcdef123456 and Bearer abc.def-123456 and mysecret99"
    cleaned = _retry.redact(text, "mysecret99")
    assert "abcdef123456" not in cleaned and "abc.def" not in cleaned
    assert "mysecret99" not in cleaned


# -- concurrency and pacing -------------------------------------------------------------
def test_concurrency_is_limited_per_model(tmp_path: Path) -> None:
    with StubServer(latency=0.1) as stub:
        client = make_client(tmp_path, concurrency=3)
        run(client, *[ask(stub, f"item {i}") for i in range(12)])
        assert stub.max_in_flight == 3


def test_each_model_has_its_own_limit(tmp_path: Path) -> None:
    with StubServer(latency=0.15) as stub:
        client = make_client(tmp_path, concurrency=2)
        requests = [ask(stub, f"item {i}", model=f"openai/judge-{i % 2}") for i in range(8)]
        run(client, *requests)
        assert stub.max_in_flight == 4


def test_a_client_survives_a_new_event_loop(tmp_path: Path) -> None:
    with StubServer(latency=0.02) as stub:
        client = make_client(tmp_path, concurrency=1, rpm=6000)
        run(client, *[ask(stub, f"first {i}") for i in range(3)])  # contended: binds the loop
        responses = run(client, *[ask(stub, f"second {i}") for i in range(3)])
        assert stub.max_in_flight == 1
    assert all(r.text == "ok" for r in responses)


def test_rpm_spaces_request_starts(tmp_path: Path) -> None:
    with StubServer() as stub:
        client = make_client(tmp_path, rpm=600, concurrency=8)  # one start per 0.1 s
        # the first call also opens the connection pool: the span is measured after it
        run(client, *[ask(stub, f"item {i}") for i in range(6)])
        times = sorted(stub.request_times)[1:]
    # the stub sees the transport's per-call jitter on top of the pacing: check the span
    assert times[-1] - times[0] >= 0.35


def test_the_pacer_never_starts_a_request_early() -> None:
    from csc_harness.llm._routes import Pacer

    async def go() -> tuple[float, list[float]]:
        pacer, starts = Pacer(rpm=1200), []  # 0.05 s apart

        async def one() -> None:
            await pacer.wait()
            starts.append(time.monotonic())

        begin = time.monotonic()
        await asyncio.gather(*(one() for _ in range(6)))
        return begin, starts

    begin, starts = asyncio.run(go())
    # start k is scheduled at begin + k * 0.05; a busy loop may wake late, never early
    assert all(t - begin >= k * 0.05 - 0.002 for k, t in enumerate(sorted(starts)))
    assert starts[-1] - begin < 2.0


# -- retry policy units -----------------------------------------------------------------
class _Failure(Exception):
    def __init__(self, status: int | None = None, headers: dict | None = None) -> None:
        super().__init__("failure")
        self.status_code = status
        self.litellm_response_headers = headers


@pytest.mark.parametrize("exc,retry", [
    pytest.param(_Failure(429), True, id="429"),
    pytest.param(_Failure(408), True, id="408"),
    pytest.param(_Failure(503), True, id="503"),
    pytest.param(_Failure(400), False, id="400"),
    pytest.param(_Failure(401), False, id="401"),
    pytest.param(asyncio.TimeoutError(), True, id="asyncio-timeout"),
    pytest.param(ConnectionResetError(), True, id="connection-reset"),
])
def test_retry_classification(exc: BaseException, retry: bool) -> None:
    assert _retry.is_retryable(exc) is retry


@pytest.mark.parametrize("headers,seconds", [
    pytest.param({"retry-after": "2"}, 2.0, id="seconds"),
    pytest.param({"retry-after": "0.25"}, 0.25, id="fraction"),
    pytest.param({"retry-after-ms": "1500", "retry-after": "9"}, 1.5, id="ms-wins"),
    pytest.param({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="past-date"),
    pytest.param({"retry-after": "soon"}, None, id="unreadable"),
    pytest.param({}, None, id="absent"),
])
def test_retry_after_parsing(headers: dict, seconds: float | None) -> None:
    assert _retry.retry_after(_Failure(429, headers)) == seconds


def test_backoff_is_full_jitter_capped() -> None:
    delays = [_retry.backoff_delay(_Failure(500), 4, 1.0, 5.0) for _ in range(200)]
    assert all(0 <= d <= 5.0 for d in delays) and max(delays) > 2.5
    assert _retry.backoff_delay(_Failure(429, {"retry-after": "100"}), 1, 1.0, 5.0) == 5.0


def test_a_closed_client_refuses_work(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    asyncio.run(client.aclose())
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(client.complete(Request(model="openai/x", messages=())))
