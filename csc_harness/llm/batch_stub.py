"""A loopback stub of the providers' batch APIs (and Anthropic's Messages API), for tests.

:class:`BatchStubServer` is a :class:`~csc_harness.llm.stub.StubServer` that also speaks:

* OpenAI Files + Batch: ``POST /v1/files`` (multipart upload), ``POST /v1/batches``,
  ``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content`` (output JSONL, one line per
  request: ``custom_id`` and ``response.body`` = a chat completion, or ``error``);
* Anthropic: ``POST /v1/messages`` (one message), ``POST /v1/messages/batches``,
  ``GET /v1/messages/batches/{id}`` and its ``results_url`` (JSONL of ``custom_id`` +
  ``result``).

With ``prompt_cache=True`` the Anthropic endpoints also play Anthropic's prompt cache: an
entry is written for the prompt prefix (system, then messages, in order) up to each
``cache_control`` breakpoint, a request reads the longest entry that ends at one of its
block boundaries up to its last breakpoint, and ``usage`` reports
``cache_read_input_tokens`` / ``cache_creation_input_tokens`` / ``input_tokens``
accordingly (a token is 4 characters here). Without it, a reply's ``prompt_tokens`` is
reported as read from the cache.

The same responder answers every request: OpenAI batch lines get the line's ``body``,
Anthropic requests their ``params`` (with ``system`` and content blocks as sent). A batch
ends after :attr:`polls` status reads; ``custom_id``s in :attr:`fail_ids` come back as
errors. The wire format follows the providers' public API references, so the real
``litellm`` / ``openai`` / ``anthropic`` clients parse it.
"""

from __future__ import annotations

import itertools
import json
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from .stub import StubServer, _chat_body, _Handler

__all__ = ["BatchStubServer"]


class BatchStubServer(StubServer):
    """StubServer plus the batch endpoints (see the module docstring)."""

    def __init__(self, *args: Any, polls: int = 1, prompt_cache: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompt_cache: set[str] | None = set() if prompt_cache else None
        """Prefixes written to the simulated Anthropic prompt cache (None: not simulated)."""
        self.usages: list[dict] = []
        """``usage`` of every Anthropic message answered, in order."""
        self.polls = polls
        """Status reads a batch answers 'in progress' before it ends."""
        self.fail_ids: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_creates = 0
        self.message_calls = 0
        self.anthropic_bodies: list[dict] = []
        self._seq = itertools.count(1)

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``: the api base of ``anthropic/...`` models."""
        return f"http://127.0.0.1:{self.port}"

    # -- OpenAI ------------------------------------------------------------------------
    def _openai_batch(self, body: dict) -> dict:
        self.batch_creates += 1
        batch_id = f"batch_stub{next(self._seq)}"
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines()
                 if line.strip()]
        self.batches[batch_id] = {"kind": "openai", "lines": lines, "reads": 0,
                                  "input_file_id": body["input_file_id"],
                                  "created": int(time.time())}
        return self._openai_state(batch_id)

    def _openai_state(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        ended = batch["reads"] >= self.polls
        if ended and "output" not in batch:
            batch["output"] = self._openai_output(batch["lines"])
        out_id = f"file-out-{batch_id}" if ended else None
        if out_id:
            self.files[out_id] = batch["output"]
        n = len(batch["lines"])
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions",
                "errors": None, "input_file_id": batch["input_file_id"],
                "completion_window": "24h", "status": "completed" if ended else "in_progress",
                "output_file_id": out_id, "error_file_id": None,
                "created_at": batch["created"], "in_progress_at": batch["created"],
                "expires_at": batch["created"] + 86400, "completed_at":
                int(time.time()) if ended else None, "failed_at": None, "expired_at": None,
                "request_counts": {"total": n, "completed": n if ended else 0, "failed": 0},
                "metadata": None}

    def _openai_output(self, lines: list[dict]) -> bytes:
        out = []
        for line in lines:
            cid = line["custom_id"]
            if cid in self.fail_ids:
                out.append({"id": f"req_{cid[:8]}", "custom_id": cid, "response": None,
                            "error": {"code": "server_error", "message": "stub failure"}})
                continue
            reply = self._next_reply(line["body"])
            body = _chat_body(self._completion_id(), line["body"], reply)
            out.append({"id": f"req_{cid[:8]}", "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": "r", "body": body}})
        return ("\n".join(json.dumps(o) for o in out) + "\n").encode()

    # -- Anthropic ---------------------------------------------------------------------
    def _message(self, params: dict) -> dict:
        self.anthropic_bodies.append(params)
        reply = self._next_reply(params)
        if self.prompt_cache is not None:
            read, written, plain = self._cache_usage(params)
        else:
            text_in = json.dumps(params.get("messages")) + json.dumps(params.get("system") or "")
            read, written, plain = reply.prompt_tokens or 0, 0, max(1, len(text_in) // 4)
        usage = {"input_tokens": plain,
                 "output_tokens": reply.completion_tokens or max(1, len(reply.text) // 4),
                 "cache_read_input_tokens": read, "cache_creation_input_tokens": written}
        self.usages.append(usage)
        return {"id": f"msg_stub{next(self._seq)}", "type": "message", "role": "assistant",
                "model": params.get("model", "stub"),
                "content": [{"type": "text", "text": reply.text}],
                "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}

    def _cache_usage(self, params: dict) -> tuple[int, int, int]:
        """(read, written, uncached) prompt tokens under the simulated prompt cache."""
        blocks: list[tuple[str, bool]] = []
        system = params.get("system") or []
        for block in ([{"text": system}] if isinstance(system, str) else system):
            blocks.append((block.get("text", ""), "cache_control" in block))
        for message in params.get("messages") or []:
            content = message.get("content")
            parts = [{"text": content}] if isinstance(content, str) else content or []
            blocks.append((f"\x1e{message.get('role')}\x1e", False))
            blocks.extend((part.get("text", ""), "cache_control" in part) for part in parts)
        prefixes, text = [], ""
        for body, marked in blocks:
            text += body
            prefixes.append((text, marked))
        last = max((i for i, (_, marked) in enumerate(prefixes) if marked), default=-1)
        hit = max((len(p) for p, _ in prefixes[:last + 1] if p in self.prompt_cache), default=0)
        end = len(prefixes[last][0]) if last >= 0 else 0
        for prefix, marked in prefixes[:last + 1]:
            if marked:
                self.prompt_cache.add(prefix)  # type: ignore[union-attr]
        read, written = hit // 4, max(0, end // 4 - hit // 4)
        return read, written, max(1, len(text) // 4 - read - written)

    def _anthropic_batch(self, body: dict) -> dict:
        self.batch_creates += 1
        batch_id = f"msgbatch_stub{next(self._seq)}"
        self.batches[batch_id] = {"kind": "anthropic", "requests": body["requests"],
                                  "reads": 0, "created": time.strftime(
                                      "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return self._anthropic_state(batch_id)

    def _anthropic_state(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        ended = batch["reads"] >= self.polls
        n = len(batch["requests"])
        return {"id": batch_id, "type": "message_batch",
                "processing_status": "ended" if ended else "in_progress",
                "request_counts": {"processing": 0 if ended else n,
                                   "succeeded": n if ended else 0, "errored": 0,
                                   "canceled": 0, "expired": 0},
                "ended_at": batch["created"] if ended else None,
                "created_at": batch["created"], "expires_at": batch["created"],
                "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{self.root_url}/v1/messages/batches/{batch_id}/results"
                if ended else None}

    def _anthropic_results(self, batch_id: str) -> bytes:
        batch = self.batches[batch_id]
        if "results" not in batch:
            out = []
            for request in batch["requests"]:
                cid = request["custom_id"]
                if cid in self.fail_ids:
                    result: dict = {"type": "errored", "error": {"type": "error", "error": {
                        "type": "api_error", "message": "stub failure"}}}
                else:
                    result = {"type": "succeeded", "message": self._message(request["params"])}
                out.append({"custom_id": cid, "result": result})
            batch["results"] = ("\n".join(json.dumps(o) for o in out) + "\n").encode()
        return batch["results"]


class _BatchHandler(_Handler):
    stub: BatchStubServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        stub = self.stub
        parts = path.split("/")
        if path.startswith("/v1/batches/") and parts[3] in stub.batches:
            stub.batches[parts[3]]["reads"] += 1
            self._send(200, stub._openai_state(parts[3]))
        elif path.startswith("/v1/files/") and path.endswith("/content") \
                and parts[3] in stub.files:
            self._send_bytes(200, stub.files[parts[3]], {"Content-Type": "application/jsonl"})
        elif path.startswith("/v1/messages/batches/") and len(parts) == 5 \
                and parts[4] in stub.batches:
            stub.batches[parts[4]]["reads"] += 1
            self._send(200, stub._anthropic_state(parts[4]))
        elif path.endswith("/results") and len(parts) == 6 and parts[4] in stub.batches:
            self._send_bytes(200, stub._anthropic_results(parts[4]),
                             {"Content-Type": "application/binary"})
        else:
            super().do_GET()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        stub = self.stub
        if path == "/v1/files":
            file_id = f"file-stub{next(stub._seq)}"
            stub.files[file_id] = _multipart_file(self.headers.get("Content-Type", ""), raw)
            self._send(200, {"id": file_id, "object": "file", "bytes": len(stub.files[file_id]),
                             "created_at": int(time.time()), "filename": "batch.jsonl",
                             "purpose": "batch", "status": "processed"})
            return
        body = json.loads(raw or b"{}")
        if path == "/v1/batches":
            self._send(200, stub._openai_batch(body))
        elif path == "/v1/messages/batches":
            self._send(200, stub._anthropic_batch(body))
        elif path == "/v1/messages":
            stub.message_calls += 1
            self._send(200, stub._message(body))
        else:
            original, self.rfile = self.rfile, _Replay(raw, self.rfile)
            try:  # the chat handler reads the body again
                super().do_POST()
            finally:
                self.rfile = original


class _Replay:
    """A body already read, handed back to the parent handler's ``rfile.read``."""

    def __init__(self, data: bytes, rest: Any) -> None:
        self._data, self._rest = data, rest

    def read(self, n: int = -1) -> bytes:
        data, self._data = self._data, b""
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rest, name)


def _multipart_file(content_type: str, raw: bytes) -> bytes:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True) or b""
    return b""


BatchStubServer.handler_class = _BatchHandler
