"""Content-addressed SQLite cache of provider answers.

Contract (changing it is a :data:`CACHE_FORMAT_VERSION` bump):

* The key is the sha256 of canonical JSON (``sort_keys=True``, ``separators=(",", ":")``,
  ``ensure_ascii=False``) of :func:`request_body`: format version, model, api base (trailing
  ``/`` dropped), messages, sampling parameters (temperature, max_tokens, stop, seed,
  top_logprobs), response schema and sample index. Editing a prompt changes the key, so a
  stale answer is never reused (AlpacaEval's row-id key is the counter-example).
* No API key and no header is part of the key or of any stored value.
* A row stores the answer (text, response model, finish reason, tokens, the original cost
  and latency, logprobs, response_format form) and, for audits, the request body.
* Only usable answers are stored: the client never calls :meth:`ResponseCache.put` for
  errors, refusals or empty texts.

SQLite runs in WAL mode. Writes go through one writer thread that group-commits (see
:mod:`csc_harness.llm._writer`); ``put`` returns, and the client's ``complete`` returns,
only after the answer is committed, so a killed process (kill -9) loses at most the calls
still in flight. Reads use the caller's connection (guarded by a lock); several processes
may share a file (WAL plus a busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from ._types import Request, Response
from ._writer import Writer

__all__ = [
    "CACHE_FORMAT_VERSION",
    "ResponseCache",
    "cache_key",
    "default_cache_path",
    "keyed_body",
    "request_body",
]

CACHE_FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key      TEXT PRIMARY KEY,
    model    TEXT NOT NULL,
    created  REAL NOT NULL,
    response TEXT NOT NULL,
    request  TEXT NOT NULL
) WITHOUT ROWID;
"""
_CHUNK = 500  # keys per SELECT ... IN (...): below SQLite's oldest variable limit (999)


def default_cache_path() -> Path:
    """Where the cache lives unless told otherwise.

    ``$CSC_HARNESS_CACHE`` (a file, or a directory that gets ``llm.sqlite``), else
    ``$XDG_CACHE_HOME/csc-harness/llm.sqlite``, else ``~/.cache/csc-harness/llm.sqlite``.
    The environment is read when called, never at import.
    """
    explicit = os.environ.get("CSC_HARNESS_CACHE")
    if explicit:
        path = Path(explicit).expanduser()
        return path / "llm.sqlite" if path.is_dir() else path
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "csc-harness" / "llm.sqlite"


def request_body(request: Request) -> dict:
    """The canonical request: exactly what the key hashes and what a row keeps for audits."""
    return {
        "v": CACHE_FORMAT_VERSION,
        "model": request.model,
        "api_base": request.api_base.rstrip("/") if request.api_base else None,
        "messages": list(request.messages),
        "params": {
            "temperature": float(request.temperature),
            "max_tokens": int(request.max_tokens),
            "stop": list(request.stop) if request.stop else None,
            "seed": request.seed,
            "top_logprobs": request.top_logprobs,
        },
        "schema": request.response_schema,
        "sample": int(request.sample),
    }


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(request: Request) -> str:
    """64 hex digits identifying ``request``'s content (see the module docstring)."""
    return keyed_body(request)[0]


def keyed_body(request: Request) -> tuple[str, str]:
    """``(key, canonical JSON body)``: the body is what a row stores, so hash it only once."""
    body = _canonical(request_body(request))
    return hashlib.sha256(body.encode("utf-8")).hexdigest(), body


def _encode_response(response: Response) -> str:
    return _canonical({
        "text": response.text,
        "response_model": response.response_model,
        "finish_reason": response.finish_reason,
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "cost_usd": response.cost_usd,
        "latency_s": response.latency_s,
        "top_logprobs": response.top_logprobs,
        "structured": response.structured,
    })


def _decode_response(key: str, raw: str) -> Response:
    data = json.loads(raw)
    logprobs = data.get("top_logprobs")
    if logprobs is not None:
        logprobs = [[(str(t), float(lp)) for t, lp in token] for token in logprobs]
    return Response(
        text=data["text"],
        response_model=data.get("response_model"),
        finish_reason=data.get("finish_reason"),
        refusal=None,
        prompt_tokens=data.get("prompt_tokens"),
        completion_tokens=data.get("completion_tokens"),
        cost_usd=data.get("cost_usd"),
        latency_s=0.0,
        cached=True,
        top_logprobs=logprobs,
        key=key,
        structured=data.get("structured"),
        attempts=0,
    )


class ResponseCache:
    """One SQLite file of answers keyed by :func:`cache_key`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # reads only (writes go through the Writer thread); autocommit so no read holds a
        # transaction open, which would keep checkpoints from recycling the WAL
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._closed = False
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash; only an OS crash can lose the tail
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints
            self._db.execute(_SCHEMA)

    def get(self, key: str) -> Response | None:
        """The stored answer for ``key`` (``cached=True``, latency 0), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT response FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else _decode_response(key, row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        """Stored answers for the keys present (one query per 500 keys)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Response] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, raw in rows:
                found[key] = _decode_response(key, raw)
        return found

    def put(self, key: str, request: Request, response: Response, body: str | None = None) -> None:
        """Store an answer and return once it is committed; the first answer for a key wins.

        ``body`` is the canonical request JSON from :func:`keyed_body`, if already computed.
        """
        self.submit(key, request, response, body).result()

    def submit(self, key: str, request: Request, response: Response,
               body: str | None = None) -> Future[None]:
        """Queue an answer for the writer thread; the future resolves once it is committed.

        Async callers await ``asyncio.wrap_future(...)`` so the event loop never blocks on
        SQLite (see :mod:`csc_harness.llm._writer`).
        """
        row = (key, request.model, time.time(), _encode_response(response),
               body if body is not None else _canonical(request_body(request)))
        with self._lock:
            if self._writer is None:
                if self._closed:
                    raise RuntimeError(f"cache {str(self.path)!r} is closed")
                self._writer = Writer(self.path)
                self._writer.start()
                # a cache dropped without close() still commits its queue and ends the thread
                weakref.finalize(self, self._writer.stop)
            return self._writer.submit(row)

    def request_of(self, key: str) -> dict | None:
        """The audited request body stored with ``key``."""
        with self._lock:
            row = self._db.execute("SELECT request FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def keys(self) -> Iterator[str]:
        with self._lock:
            rows = self._db.execute("SELECT key FROM responses").fetchall()
        return (key for (key,) in rows)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Commit queued answers, stop the writer, then close (the WAL is folded back in)."""
        with self._lock:
            writer, self._writer, self._closed = self._writer, None, True
        if writer is not None:
            writer.stop()
        with self._lock:
            self._db.close()
