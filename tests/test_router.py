"""PrefixRouter over loopback upstreams that answer one request at a time, like
llama-cpp-python's server: conversations stay on one upstream, work spreads, queues are
served longest-prefix-first, failures come back as JSON errors."""

import json
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from csc_harness.llm.router import PrefixRouter, common_prefix, prompt_key


class Upstream:
    """Answers one request at a time with its name; records what it served, in order."""

    def __init__(self, name: str, delay: float = 0.01) -> None:
        self.name, self.delay, self.served = name, delay, []
        self.gate = threading.Event()
        self.gate.set()
        self.busy = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with upstream.busy:
                    upstream.gate.wait(10)
                    upstream.served.append(body["messages"][-1]["content"])
                    time.sleep(upstream.delay)
                self._answer({"worker": upstream.name})

            def do_GET(self):
                self._answer({"data": [{"id": upstream.name}]})

            def _answer(self, payload):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstreams():
    made = [Upstream("w0"), Upstream("w1")]
    yield made
    for u in made:
        u.close()


def post(url: str, messages: list[dict]) -> dict:
    request = urllib.request.Request(f"{url}/v1/chat/completions",
                                     json.dumps({"messages": messages}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)


SYSTEM = {"role": "system", "content": "You are a support agent. " * 40}


def conversation(n: int, turns: int, header: str = "") -> list[list[dict]]:
    """The prompts of one conversation's supporter turns: each extends the one before."""
    history, prompts = [], []
    for k in range(turns):
        history.append({"role": "user", "content": f"{header}customer {n} says thing {k}: "
                        + f"my account {n} has a problem number {k}. " * 3})
        prompts.append([SYSTEM, *history])
        history.append({"role": "assistant", "content": f"agent answer {n}.{k}"})
    return prompts


def test_common_prefix_agrees_with_os_path():
    rng = random.Random(0)
    for _ in range(500):
        a = "".join(rng.choice("ab") for _ in range(rng.randrange(12)))
        b = "".join(rng.choice("ab") for _ in range(rng.randrange(12)))
        assert common_prefix(a, b) == len(os.path.commonprefix([a, b]))


def test_prompt_key_separates_the_system_message():
    system, rest = prompt_key({"messages": [SYSTEM, {"role": "user", "content": "hi"}]})
    assert "support agent" in system and rest == "user\x1fhi"
    assert prompt_key({"messages": [{"role": "user", "content": "hi"}]}) == ("", "user\x1fhi")
    assert prompt_key({"prompt": "text"}) == ("", "text")
    assert prompt_key([1, 2]) == ("", "")


@pytest.mark.parametrize("header", ["", "Grade the reply below against the rubric. " * 20],
                         ids=["chat", "shared-header"])
def test_each_conversation_stays_on_one_upstream_and_both_are_used(upstreams, header):
    """All turns of six conversations arrive in order while both upstreams are held, so
    the whole assignment happens before anything finishes: each conversation lands on one
    upstream, the two share the work, and each serves its conversations one after another."""
    conversations = [conversation(n, 6, header) for n in range(6)]
    for u in upstreams:
        u.gate.clear()
    with PrefixRouter([u.url for u in upstreams]) as router, ThreadPoolExecutor(36) as pool:
        futures = []
        for n, conv in enumerate(conversations):
            for messages in conv:
                futures.append((n, pool.submit(post, router.url, messages)))
                time.sleep(0.01)  # arrive in order
        for u in upstreams:
            u.gate.set()
        answers = [(n, future.result()["worker"]) for n, future in futures]
    homes: dict[int, set[str]] = {}
    for n, worker in answers:
        homes.setdefault(n, set()).add(worker)
    assert all(len(home) == 1 for home in homes.values()), homes
    assert sorted(len(u.served) for u in upstreams) == [18, 18]
    for u in upstreams:
        order = [int(re.search(r"customer (\d+) says", s).group(1)) for s in u.served]
        assert order == sorted(order), order


def test_a_queue_is_served_longest_prefix_first(upstreams):
    only = upstreams[0]
    a, b = conversation(1, 3), conversation(2, 3)
    with PrefixRouter([only.url]) as router, ThreadPoolExecutor(4) as pool:
        only.gate.clear()  # hold the first request so the others queue behind it
        futures = [pool.submit(post, router.url, a[0])]
        time.sleep(0.2)
        futures += [pool.submit(post, router.url, m) for m in (b[0], a[1])]
        time.sleep(0.2)
        only.gate.set()
        for future in futures:
            future.result()
    assert [s.split(":")[0] for s in only.served] == [
        "customer 1 says thing 0", "customer 1 says thing 1", "customer 2 says thing 0"]


def test_a_dead_upstream_becomes_a_json_error(upstreams):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with PrefixRouter([dead]) as router, pytest.raises(urllib.error.HTTPError) as failure:
        post(router.url, conversation(1, 1)[0])
    assert failure.value.code == 502
    assert "failed" in json.load(failure.value)["error"]["message"]


def test_get_requests_reach_the_first_upstream(upstreams):
    with PrefixRouter([u.url for u in upstreams]) as router, \
            urllib.request.urlopen(f"{router.url}/v1/models", timeout=10) as reply:
        assert json.load(reply)["data"][0]["id"] == "w0"


def test_a_router_needs_an_upstream():
    with pytest.raises(ValueError):
        PrefixRouter([])
