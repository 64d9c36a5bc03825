"""A loopback OpenAI-compatible server with scripted answers, for tests and demos.

Pointing ``openai/<name>`` at :attr:`StubServer.base_url` exercises the real litellm HTTP
path (serialisation, error mapping, headers) with no network. The server records every
request body it saw (never headers, so API keys are never captured) and fails loudly when
it runs out of scripted answers: a test that expected fewer calls sees an HTTP 500 and an
entry in :attr:`StubServer.errors`.

Example::

    with StubServer([StubReply(status=429, headers={"Retry-After": "0.1"}), "fine"]) as stub:
        ...  # Request(model="openai/judge", api_base=stub.base_url, ...)
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["StubReply", "StubServer"]

Responder = Callable[[dict], "StubReply | str"]


@dataclass(frozen=True)
class StubReply:
    """One scripted answer.

    A status other than 200 sends an OpenAI-style error body (``error.message`` = ``text``
    or a default); ``raw`` replaces the whole body (for garbage answers).
    """

    text: str = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to sleep before answering (to trigger client timeouts)."""
    model: str | None = None
    """Model name echoed in the answer; default: the request's ``model``."""
    prompt_tokens: int | None = None
    """Default: a rough count of the request's characters / 4."""
    completion_tokens: int | None = None
    logprobs: list[list[tuple[str, float]]] | None = None
    """Per generated token, the alternatives ``[(token, logprob), ...]``; the first is chosen."""
    finish_reason: str = "stop"
    refusal: str | None = None
    raw: str | bytes | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_sockets: set[Any] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive connections too, so a stopped stub looks like a dead server."""
        with self.sockets_lock:
            sockets, self.open_sockets = list(self.open_sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class StubServer:
    """Threaded loopback server answering OpenAI chat/completions requests from a script.

    ``responder`` is either a callable mapping the request body to a reply, or an iterable
    of replies consumed in order (shared across all endpoints). ``None`` answers "ok" to
    everything (for benchmarks). ``latency`` is slept on every request, in addition to a
    reply's own ``delay``.
    """

    def __init__(
        self,
        responder: Responder | Iterable[StubReply | str] | None = None,
        *,
        latency: float = 0.0,
    ) -> None:
        self.latency = latency
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.errors: list[str] = []
        self.request_times: list[float] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._responder: Responder | None
        self._script: deque[StubReply | str] | None
        if responder is None:
            self._responder, self._script = (lambda body: StubReply()), None
        elif callable(responder):
            self._responder, self._script = responder, None
        else:
            self._responder, self._script = None, deque(responder)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    handler_class: type[BaseHTTPRequestHandler]  # set below: _Handler, or a subclass's

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> StubServer:
        """Bind to an ephemeral loopback port and serve on a daemon thread."""
        if self._server is None:
            handler = type("StubHandler", (self.handler_class,), {"stub": self})
            self._server = _Server(("127.0.0.1", 0), handler)
            # a short poll keeps stop() (and so every test) from waiting the default 0.5 s
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                name="csc-stub", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            self._server = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("StubServer is not running: use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``api_base`` for ``openai/<name>`` models."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def remaining(self) -> int:
        """Scripted replies not yet consumed (0 for a callable responder)."""
        return len(self._script) if self._script is not None else 0

    # -- request side (called from handler threads) ----------------------------------
    def _enter(self, path: str, body: dict) -> None:
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            self.request_times.append(time.monotonic())
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_reply(self, body: dict) -> StubReply:
        if self._script is not None:
            with self._lock:
                if not self._script:
                    message = (
                        f"StubServer ran out of scripted replies at request "
                        f"#{len(self.requests)} (model {body.get('model')!r})"
                    )
                    self.errors.append(message)
                    return StubReply(text=message, status=500)
                reply = self._script.popleft()
        else:
            assert self._responder is not None
            try:
                reply = self._responder(body)
            except Exception as exc:
                self.errors.append(f"responder raised {exc!r}")
                return StubReply(text=f"responder raised {exc!r}", status=500)
        return StubReply(text=reply) if isinstance(reply, str) else reply

    def _completion_id(self) -> str:
        return f"chatcmpl-stub{next(self._ids)}"


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests; ``stub`` is set on the per-server subclass."""

    stub: StubServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse pooled connections
    # headers and body go out as two writes: with Nagle on, the body waits for the client's
    # delayed ACK of the headers, 40 ms on Linux, which no real provider adds
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silence per-request stderr lines

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            data = [{"id": "stub", "object": "model", "created": 0, "owned_by": "stub"}]
            self._send(200, {"object": "list", "data": data})
        else:
            self._send(404, _error_body(f"no route GET {self.path}", 404))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparseable": raw.decode("utf-8", "replace")}
        path = self.path.split("?", 1)[0].rstrip("/")
        self.stub._enter(path, body)
        try:
            self._answer(_route(path), body)
        finally:
            self.stub._leave()

    def _answer(self, kind: str | None, body: dict) -> None:
        if kind is None:
            self._send(404, _error_body(f"no route POST {self.path}", 404))
            return
        if body.get("stream"):
            self._send(400, _error_body("StubServer does not stream: send stream=false", 400))
            return
        reply = self.stub._next_reply(body)
        pause = self.stub.latency + reply.delay
        if pause > 0:
            time.sleep(pause)
        if reply.raw is not None:
            raw = reply.raw.encode() if isinstance(reply.raw, str) else reply.raw
            self._send_bytes(reply.status, raw, reply.headers)
        elif reply.status != 200:
            message = reply.text if reply.text != "ok" else f"StubServer HTTP {reply.status}"
            self._send(reply.status, _error_body(message, reply.status), reply.headers)
        else:
            make = _chat_body if kind == "chat" else _text_body
            self._send(200, make(self.stub._completion_id(), body, reply), reply.headers)

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers)

    def _send_bytes(self, status: int, raw: bytes, headers: dict[str, str] | None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer


def _route(path: str) -> str | None:
    if path in ("/v1/chat/completions", "/chat/completions"):
        return "chat"
    if path in ("/v1/completions", "/completions"):
        return "text"
    return None


def _error_body(message: str, status: int) -> dict:
    kind = "rate_limit_error" if status == 429 else "invalid_request_error"
    if status >= 500:
        kind = "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


def _usage(body: dict, reply: StubReply) -> dict:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = max(1, len(json.dumps(body.get("messages") or body.get("prompt") or "")) // 4)
    completion = reply.completion_tokens
    if completion is None:
        completion = len(reply.logprobs) if reply.logprobs else max(1, len(reply.text) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _logprobs(reply: StubReply) -> dict | None:
    if reply.logprobs is None:
        return None
    content = []
    for alternatives in reply.logprobs:
        top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives]
        chosen = top[0] if top else {"token": "", "logprob": 0.0, "bytes": []}
        content.append({**chosen, "top_logprobs": top})
    return {"content": content, "refusal": None}


def _chat_body(completion_id: str, body: dict, reply: StubReply) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.refusal is not None:
        message = {"role": "assistant", "content": None, "refusal": reply.refusal}
    choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason,
              "logprobs": _logprobs(reply)}
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()),
        "model": reply.model or body.get("model") or "stub", "system_fingerprint": "fp_stub",
        "choices": [choice], "usage": _usage(body, reply),
    }


def _text_body(completion_id: str, body: dict, reply: StubReply) -> dict:
    choice = {"index": 0, "text": reply.text, "finish_reason": reply.finish_reason,
              "logprobs": None}
    return {
        "id": completion_id, "object": "text_completion", "created": int(time.time()),
        "model": reply.model or body.get("model") or "stub",
        "choices": [choice], "usage": _usage(body, reply),
    }


StubServer.handler_class = _Handler
