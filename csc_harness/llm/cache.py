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

The file's layout has its own version, kept in its ``schema_version`` table (one row per
migration applied, with its time; :data:`SCHEMA_VERSION` is what this code reads): opening
an older file runs the :data:`MIGRATIONS` in one transaction, so an upgrade never orphans
answers already paid for; a newer or foreign file is refused with a one-line error.

SQLite runs in WAL mode. Writes go through one writer thread that group-commits (see
:mod:`csc_harness.llm._writer`); ``put`` returns, and the client's ``complete`` returns,
only after the answer is committed, so a killed process (kill -9) loses at most the calls
still in flight. Reads use the caller's connection (guarded by a lock); several processes
may share a file (WAL plus a busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from ..errors import UserError
from ._types import Request, Response
from ._writer import Writer

log = logging.getLogger(__name__)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "SCHEMA_VERSION",
    "ResponseCache",
    "cache_key",
    "default_cache_path",
    "keyed_body",
    "request_body",
]

CACHE_FORMAT_VERSION = 1
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key      TEXT PRIMARY KEY,
    model    TEXT NOT NULL,
    created  REAL NOT NULL,
    response TEXT NOT NULL,
    request  TEXT NOT NULL
) WITHOUT ROWID;
"""
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied REAL NOT NULL
);
"""
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # from version -> statements that bring a file to the next version
    0: (_SCHEMA, _VERSION_TABLE),  # new files, and files from before versioning (same table)
}
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
    """``(key, canonical JSON body)``: the body is what a row stores, so hash it only once.

    Kept on the (immutable) request: a runner that looks keys up in bulk and then calls
    ``Client.complete`` would otherwise serialise and hash every prompt twice.
    """
    memo = request.__dict__.get("_keyed")
    if memo is None:
        body = _canonical(request_body(request))
        memo = (hashlib.sha256(body.encode("utf-8")).hexdigest(), body)
        object.__setattr__(request, "_keyed", memo)  # not a field: eq and hash ignore it
    return memo


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
        "deployment": response.deployment,
        "cached_tokens": response.cached_tokens,
        "cache_write_tokens": response.cache_write_tokens,
        "batch": response.batch,
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
        deployment=data.get("deployment"),
        cached_tokens=data.get("cached_tokens"),
        cache_write_tokens=data.get("cache_write_tokens"),
        batch=bool(data.get("batch")),
    )


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` (see the module docstring)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables - {"responses", "schema_version"}:
        raise UserError(f"{str(path)!r} is an SQLite file but not a csc-harness cache (tables: "
                        f"{', '.join(sorted(tables))}): pass another --cache")
    version = _version(db, tables)
    if version > SCHEMA_VERSION:
        raise UserError(f"cache {str(path)!r} was written by a newer csc-harness (schema "
                        f"{version}, this one reads up to {SCHEMA_VERSION}): upgrade "
                        "csc-harness or pass another --cache")
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for step in range(_version(db, tables), SCHEMA_VERSION):  # another process may have
            for statement in MIGRATIONS[step]:                    # migrated meanwhile
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                       (step + 1, time.time()))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _version(db: sqlite3.Connection, tables: set[str]) -> int:
    if "schema_version" not in tables:
        return 0  # a new file, or one from before versioning
    return db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


class ResponseCache:
    """One SQLite file of answers keyed by :func:`cache_key`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._closed = False
        self.write_failures = 0
        """Answers that could not be stored (disk full, read-only file): warned about once."""
        try:
            if self.path.is_dir():
                raise sqlite3.OperationalError("it is a directory")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # reads only (writes go through the Writer thread); autocommit so no read holds
            # a transaction open, which would keep checkpoints from recycling the WAL
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash; only an OS crash can lose the tail
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints
            _migrate(self._db, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise UserError(f"cannot use {str(self.path)!r} as the response cache ({exc}): "
                            "pass a writable file path with --cache, or move a corrupt file "
                            "aside") from None

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
        """Queue an answer for the writer thread; the future resolves once it is committed,
        or once the write failed: an answer already paid for is still returned, so a cache
        that cannot be written (disk full, read-only) is warned about once, not per call,
        and counted in :attr:`write_failures`.

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
            committed = self._writer.submit(row)
        settled: Future[None] = Future()
        committed.add_done_callback(lambda done: self._settle(done, settled))
        return settled

    def _settle(self, committed: Future[None], settled: Future[None]) -> None:
        exc = committed.exception()
        if exc is not None:
            with self._lock:
                self.write_failures += 1
                first = self.write_failures == 1
            if first:
                log.warning("cannot write to the response cache %s (%s): answers from now on "
                            "are not cached (a re-run will pay for them again); this run goes "
                            "on", self.path, exc)
        settled.set_result(None)

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
