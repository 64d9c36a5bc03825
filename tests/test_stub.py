"""StubServer: the loopback OpenAI-compatible fake speaks realistic JSON and fails loudly."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from csc_harness.llm import StubReply, StubServer

CHAT = {"model": "judge", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def post(stub: StubServer, path: str, body: dict, headers: dict | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body),
                     {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_chat_completion_has_the_openai_shape() -> None:
    with StubServer(["hello"]) as stub:
        status, _, raw = post(stub, "/v1/chat/completions", CHAT)
    body = json.loads(raw)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    assert body["model"] == "judge"  # echoes the request's model by default
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "hello"}
    assert choice["logprobs"] is None
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_base_url_points_at_the_v1_prefix() -> None:
    with StubServer() as stub:
        assert stub.base_url == f"http://127.0.0.1:{stub.port}/v1"


def test_scripted_replies_are_consumed_in_order() -> None:
    with StubServer(["one", StubReply(text="two", model="judge-2024")]) as stub:
        first = json.loads(post(stub, "/v1/chat/completions", CHAT)[2])
        second = json.loads(post(stub, "/chat/completions", CHAT)[2])
        assert stub.remaining == 0
    assert first["choices"][0]["message"]["content"] == "one"
    assert second["choices"][0]["message"]["content"] == "two"
    assert second["model"] == "judge-2024"


def test_running_out_of_replies_is_a_loud_500_and_a_recorded_error() -> None:
    with StubServer(["only"]) as stub:
        post(stub, "/v1/chat/completions", CHAT)
        status, _, raw = post(stub, "/v1/chat/completions", CHAT)
    assert status == 500
    assert "ran out of scripted replies" in json.loads(raw)["error"]["message"]
    assert len(stub.errors) == 1 and "request #2" in stub.errors[0]


def test_error_status_and_headers_are_sent() -> None:
    reply = StubReply(status=429, headers={"Retry-After": "0.5"}, text="slow down")
    with StubServer([reply]) as stub:
        status, headers, raw = post(stub, "/v1/chat/completions", CHAT)
    assert status == 429
    assert headers["retry-after"] == "0.5"
    assert json.loads(raw)["error"]["message"] == "slow down"


def test_raw_body_replaces_the_answer() -> None:
    with StubServer([StubReply(raw="not json {")]) as stub:
        status, _, raw = post(stub, "/v1/chat/completions", CHAT)
    assert (status, raw) == (200, b"not json {")


def test_usage_and_finish_reason_are_scriptable() -> None:
    reply = StubReply(prompt_tokens=11, completion_tokens=7, finish_reason="length")
    with StubServer([reply]) as stub:
        body = json.loads(post(stub, "/v1/chat/completions", CHAT)[2])
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert body["choices"][0]["finish_reason"] == "length"


def test_logprobs_follow_the_chat_completions_format() -> None:
    reply = StubReply(text="4", logprobs=[[("4", -0.1), ("5", -2.5)]])
    with StubServer([reply]) as stub:
        body = json.loads(post(stub, "/v1/chat/completions", CHAT)[2])
    content = body["choices"][0]["logprobs"]["content"]
    assert content[0]["token"] == "4" and content[0]["logprob"] == -0.1
    assert [(t["token"], t["logprob"]) for t in content[0]["top_logprobs"]] == [
        ("4", -0.1), ("5", -2.5)]


def test_refusal_sets_message_refusal_and_no_content() -> None:
    with StubServer([StubReply(refusal="I can't help with that")]) as stub:
        body = json.loads(post(stub, "/v1/chat/completions", CHAT)[2])
    message = body["choices"][0]["message"]
    assert message["content"] is None and message["refusal"] == "I can't help with that"


def test_text_completions_and_model_list_are_served() -> None:
    with StubServer(["text answer"]) as stub:
        status, _, raw = post(stub, "/v1/completions", {"model": "m", "prompt": "x"})
        conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=10)
        conn.request("GET", "/v1/models")
        models = json.loads(conn.getresponse().read())
        conn.close()
    body = json.loads(raw)
    assert status == 200 and body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "text answer"
    assert models["object"] == "list" and models["data"]


def test_streaming_is_refused() -> None:
    with StubServer(["unused"]) as stub:
        status, _, _ = post(stub, "/v1/chat/completions", {**CHAT, "stream": True})
        assert stub.remaining == 1
    assert status == 400


def test_unknown_route_is_404() -> None:
    with StubServer() as stub:
        assert post(stub, "/v2/whatever", CHAT)[0] == 404


def test_captures_bodies_but_never_headers() -> None:
    secret = "sk-test-stub-NEVER-CAPTURED-42"
    with StubServer() as stub:
        post(stub, "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {secret}"})
    assert stub.requests == [CHAT]
    assert secret not in repr(stub.__dict__)


def test_callable_responder_sees_the_body() -> None:
    def echo(body: dict) -> str:
        return body["messages"][-1]["content"].upper()

    with StubServer(echo) as stub:
        body = json.loads(post(stub, "/v1/chat/completions", CHAT)[2])
    assert body["choices"][0]["message"]["content"] == "HI"


def test_a_responder_that_raises_fails_loudly() -> None:
    def broken(body: dict) -> str:
        raise KeyError("nope")

    with StubServer(broken) as stub:
        assert post(stub, "/v1/chat/completions", CHAT)[0] == 500
    assert stub.errors and "KeyError" in stub.errors[0]


def test_delay_holds_the_answer() -> None:
    with StubServer([StubReply(delay=0.3)]) as stub:
        start = time.monotonic()
        post(stub, "/v1/chat/completions", CHAT)
    assert time.monotonic() - start >= 0.3


def test_serves_hundreds_of_concurrent_requests() -> None:
    results: list[int] = []
    lock = threading.Lock()

    def worker(stub: StubServer) -> None:
        status = post(stub, "/v1/chat/completions", CHAT)[0]
        with lock:
            results.append(status)

    with StubServer(latency=0.3) as stub:
        threads = [threading.Thread(target=worker, args=(stub,)) for _ in range(200)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
    assert results == [200] * 200
    assert stub.max_in_flight > 50  # served side by side, not one after another
    assert elapsed < 200 * 0.3 / 10


def test_port_needs_a_running_server() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = StubServer().base_url
