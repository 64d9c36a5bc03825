"""One loopback URL in front of several single-request llama.cpp servers.

llama-cpp-python's server answers one request at a time and keeps only the previous
request's tokens: a request pays for the part of its prompt past the longest prefix it shares
with the one before. On a small CPU, one server per core with a single thread each is about
twice as fast as one server with two threads, but only if each server keeps seeing the same
conversation. :class:`PrefixRouter` therefore routes like a cache-aware load balancer
(SGLang's router is the model): a request whose conversation already lives on a server
(it shares a long prefix past the system message with a request that server ran or has
queued) goes there; anything else goes to the least busy server. Each server's queue is
served longest-prefix-match first, so interleaved conversations do not evict one another.

Responses are relayed whole (a streamed answer arrives in one piece at the end).
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["PrefixRouter", "common_prefix", "prompt_key"]

log = logging.getLogger(__name__)

_MIN_AFFINITY_CHARS = 64
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                          "proxy-connection", "upgrade", "te", "trailer"})


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings (binary search over C-speed compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def prompt_key(body: Any) -> tuple[str, str]:
    """(system part, conversation part) of a chat or completion request, as text.

    The system message is what many conversations share (instructions, rubric); what
    follows identifies the conversation.
    """
    if not isinstance(body, dict):
        return "", ""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts = [f"{m.get('role')}\x1f{m.get('content')}" if isinstance(m, dict) else str(m)
                 for m in messages]
        if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
            return parts[0], "\x1e".join(parts[1:])
        return "", "\x1e".join(parts)
    prompt = body.get("prompt")
    return "", prompt if isinstance(prompt, str) else json.dumps(prompt)


@dataclass
class _Job:
    system: str
    rest: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    done: threading.Event = field(default_factory=threading.Event)
    status: int = 502
    reply_headers: list[tuple[str, str]] = field(default_factory=list)
    reply: bytes = b""

    def fail(self, status: int, message: str) -> None:
        self.status = status
        self.reply_headers = [("Content-Type", "application/json")]
        self.reply = json.dumps({"error": {"message": message, "type": "router_error"}}).encode()
        self.done.set()


class _Upstream:
    """One server: its queue, what it ran last, and the thread that feeds it."""

    def __init__(self, url: str, cond: threading.Condition) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.queue: list[_Job] = []
        self.running: _Job | None = None
        self.last: tuple[str, str] = ("", "")
        self.served = 0
        self._cond = cond

    @property
    def load(self) -> int:
        return len(self.queue) + (self.running is not None)

    def affinity(self, system: str, rest: str) -> int:
        """Longest conversation prefix (past an identical system part) shared with a
        request this server ran last or has queued."""
        keys = [self.last] + [(j.system, j.rest) for j in self.queue]  # last = the running one
        return max((common_prefix(rest, r) for s, r in keys if s == system), default=0)

    def next_job(self) -> _Job:
        """Longest prefix match with the last request first; ties in arrival order."""
        system, rest = self.last

        def rank(i: int) -> tuple[bool, int, int]:
            job = self.queue[i]
            same = job.system == system
            return same, common_prefix(job.rest, rest) if same else 0, -i

        return self.queue.pop(max(range(len(self.queue)), key=rank))

    def serve_forever(self, stopping: threading.Event) -> None:
        conn: list[http.client.HTTPConnection | None] = [None]
        while True:
            with self._cond:
                while not self.queue and not stopping.is_set():
                    self._cond.wait()
                if stopping.is_set():
                    for job in self.queue:
                        job.fail(503, "the local model server is stopping")
                    self.queue.clear()
                    return
                job = self.next_job()
                self.running, self.last = job, (job.system, job.rest)
            try:
                _forward(self.host, self.port, job, conn, self.url)
            finally:
                with self._cond:
                    self.running = None
                    self.served += 1
                job.done.set()


def _forward(host: str, port: int, job: _Job, conn: list[http.client.HTTPConnection | None],
             url: str) -> None:
    """Send ``job`` over the kept-alive ``conn[0]`` (reconnecting once if the server closed
    it) and store the answer in the job; a dead server becomes a 502 answer."""
    for attempt in (1, 2):
        try:
            if conn[0] is None:
                conn[0] = http.client.HTTPConnection(host, port, timeout=3600)
            conn[0].request(job.method, job.path, body=job.body or None, headers=job.headers)
            reply = conn[0].getresponse()
            job.status, job.reply = reply.status, reply.read()
            job.reply_headers = [(k, v) for k, v in reply.getheaders()
                                 if k.lower() not in _HOP_HEADERS]
            return
        except (OSError, http.client.HTTPException) as exc:
            if conn[0] is not None:
                conn[0].close()
            conn[0] = None
            if attempt == 2:
                job.fail(502, f"local model server {url} failed: {exc}")


class PrefixRouter:
    """Serve ``upstreams`` (base URLs such as ``http://127.0.0.1:9001``) behind one port.

    ``with PrefixRouter(urls, port=0) as router: router.url`` - requests are forwarded
    path and all, so ``router.url + "/v1"`` is an OpenAI-compatible base URL.
    """

    def __init__(self, upstreams: Sequence[str], *, host: str = "127.0.0.1",
                 port: int = 0, max_imbalance: int = 8) -> None:
        if not upstreams:
            raise ValueError("a router needs at least one upstream server")
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.upstreams = [_Upstream(u, self._cond) for u in upstreams]
        self.max_imbalance = max_imbalance
        self._placed: dict[int, str] = {}
        self._previous: dict[str, str] = {}
        self._header: dict[str, int] = {}
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def choose(self, system: str, rest: str) -> _Upstream:
        """The server whose conversation this is, else the least busy one (preferring one
        that already holds the same system part).

        A conversation is "on" a server when that server shares a longer prefix with it than
        every other server does, and longer than the header that requests of different
        conversations share (the shortest prefix two consecutive requests with this system
        part have shared where neither continues the other), by at least a short sentence. Stickiness yields when the
        home server is ``max_imbalance`` requests busier than the least busy one.
        """
        previous = self._previous.get(system)
        self._previous[system] = rest
        if previous is not None:
            shared = common_prefix(rest, previous)
            if shared < min(len(rest), len(previous)):  # not a continuation of the same prompt
                self._header[system] = min(self._header.get(system, shared), shared)
        scores = sorted(((u.affinity(system, rest), i) for i, u in enumerate(self.upstreams)),
                        reverse=True)
        least = min(self.upstreams, key=lambda u: (u.load, u.last[0] != system, u.served))
        second = scores[1][0] if len(scores) > 1 else 0
        home = self.upstreams[scores[0][1]]
        shared = max(second, self._header.get(system, 0))
        if (scores[0][0] - shared >= _MIN_AFFINITY_CHARS
                and home.load - least.load <= self.max_imbalance):
            return home
        return least

    def submit(self, job: _Job) -> _Job:
        with self._cond:
            upstream = self.choose(job.system, job.rest)
            upstream.queue.append(job)
            self._placed[hash((job.system, job.rest))] = upstream.url
            self._cond.notify_all()
        job.done.wait()
        return job

    def placed(self, body: Any) -> str | None:
        """The upstream URL a request with this JSON body was sent to (the last time)."""
        return self._placed.get(hash(prompt_key(body)))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes (see llm.stub)

            def _relay(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    system, rest = prompt_key(json.loads(body)) if body else ("", "")
                except ValueError:
                    system, rest = "", ""
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_HEADERS and k.lower() != "host"}
                job = _Job(system, rest, method, self.path, body, headers)
                if method == "GET":  # model lists and health checks skip the queues
                    upstream = router.upstreams[0]
                    _forward(upstream.host, upstream.port, job, [None], upstream.url)
                else:
                    router.submit(job)
                self.send_response(job.status)
                for key, value in job.reply_headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(job.reply)))
                self.end_headers()
                self.wfile.write(job.reply)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("router: " + format, *args)

        return Handler

    def start(self) -> PrefixRouter:
        for i, upstream in enumerate(self.upstreams):
            thread = threading.Thread(target=upstream.serve_forever, args=(self._stopping,),
                                      daemon=True, name=f"router-upstream-{i}")
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                  name="router-http")
        thread.start()
        self._threads.append(thread)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._cond:
            self._stopping.set()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> PrefixRouter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
