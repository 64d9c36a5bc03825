"""``OUT/judgments.jsonl``: append-only, line-atomic, resumable.

Rows are written in batches: each batch is one ``write`` on an ``O_APPEND`` descriptor
followed by ``fsync``, so a killed process leaves whole lines plus at most one torn last
line. On open, a torn last line is cut off and the existing rows become the "done" set.
Rows the coming run replaces are taken out by one atomic rewrite, so the file never holds
two rows with one identity: ``error`` rows (retried) are dropped, stale rows (their slot's
input changed, see :mod:`csc_harness.contract`) are moved to ``superseded.jsonl``. Answers already paid for but not yet written when the
process died are in the provider cache, so redoing them costs no provider call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..contract import JUDGMENTS_FILE, SUPERSEDED_FILE, row_key
from ..errors import DataError, UserError
from ..jsonl import parse_json, write_all

__all__ = ["JUDGMENTS_FILE", "JudgmentStore", "Record"]

FLUSH_ROWS = 512
FLUSH_SECONDS = 1.0


class Record(NamedTuple):
    """What summaries need from a row (rows themselves are not kept in memory)."""

    kind: str
    item_id: str
    model: str
    judge: str
    dimension: str
    sample: int
    status: str
    score: float | None
    winner: str | None
    order: str | None
    model_a: str | None
    model_b: str | None
    cost_usd: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached: bool
    input_id: str | None


def record_of(row: dict[str, Any]) -> Record:
    return Record(row.get("kind", "absolute"), row["item_id"], row["model"], row["judge"],
                  row["dimension"], row.get("sample", 0), row["status"], row.get("score"),
                  row.get("winner"), row.get("order"), row.get("model_a"), row.get("model_b"),
                  row.get("cost_usd"), row.get("prompt_tokens"), row.get("completion_tokens"),
                  bool(row.get("cached")), row.get("input_id"))


class JudgmentStore:
    """The rows of one output folder: what is done, and an appender for new rows."""

    def __init__(self, out_dir: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.read_only = read_only
        self.path = self.out_dir / JUDGMENTS_FILE
        self.records: dict[tuple, Record] = {}
        self.truncated_bytes = 0
        self._lines: list[tuple[tuple, int, int]] = []  # key, start offset, end offset
        self._buffer: list[str] = []
        self._keys: list[tuple] = []  # identities of the buffered rows
        self._last_flush = time.monotonic()
        self._fd: int | None = None
        if self.path.exists() and not self.path.is_file():
            raise UserError(f"{str(self.path)!r} is not a file: move it aside or use another "
                            "--out")
        if self.path.is_file():
            self._load()
        if not read_only:
            try:  # fail before any call is paid for, not at the first write
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(f"cannot write {str(self.path)!r} ({exc.strerror or exc}): "
                                "pass a writable --out folder") from None
        self.spent_usd_before = sum(r.cost_usd for r in self.records.values()
                                    if r.cost_usd is not None and not r.cached)
        """Provider spend recorded in the folder when opened (unknown costs count as 0)."""

    def _load(self) -> None:
        data = self.path.read_bytes()
        good_end, start, lineno = 0, 0, 0
        while start < len(data):
            end = data.find(b"\n", start)
            lineno += 1
            if end == -1:
                break  # every batch ends with a newline: a line without one is torn
            line = data[start:end]
            try:
                row = parse_json(line) if line.strip() else None
            except DataError:
                row = False
            if row is False or (row is not None and not isinstance(row, dict)):
                raise DataError("not a judgment row (the file is corrupt, not just torn at "
                                "the end): move it aside to start over", path=str(self.path),
                                line=lineno)
            if row is not None:
                key = row_key(row)
                try:
                    self.records[key] = record_of(row)
                except KeyError as exc:
                    raise DataError("judgment row without this field", path=str(self.path),
                                    line=lineno, field=str(exc.args[0])) from None
                except TypeError:  # a list or object where the identity needs a value
                    raise DataError("judgment row with a malformed identity field (the file "
                                    "is corrupt): move it aside to start over",
                                    path=str(self.path), line=lineno) from None
                self._lines.append((key, start, end + 1))
            good_end = start = end + 1
        if good_end < len(data):
            self.truncated_bytes = len(data) - good_end
            if not self.read_only:
                os.truncate(self.path, good_end)

    def done(self, key: tuple, input_id: str | None = None) -> bool:
        """A finished row fills the slot (and, given ``input_id``, judged that input)."""
        record = self.records.get(key)
        return (record is not None and record.status != "error"
                and (input_id is None or record.input_id == input_id))

    def replace_stale(self, wanted: Mapping[tuple, str]) -> tuple[int, int]:
        """Take out the rows the coming run redoes: ``error`` rows of slots in ``wanted``
        (dropped: retried) and rows whose ``input_id`` differs from the slot's wanted one
        (appended to ``superseded.jsonl``, then dropped). Returns (errors, superseded)."""
        errors, stale = set(), set()
        for key, record in self.records.items():
            want = wanted.get(key)
            if want is None:
                continue
            if record.status == "error":
                errors.add(key)
            elif record.input_id != want:
                stale.add(key)
        if not errors and not stale:
            return 0, 0
        data = self.path.read_bytes()
        if stale:
            old = b"".join(data[s:e] for k, s, e in self._lines if k in stale)
            _append_synced(self.out_dir / SUPERSEDED_FILE, old)
        drop = errors | stale
        kept = b"".join(data[s:e] for k, s, e in self._lines if k not in drop)
        tmp = self.path.with_suffix(".jsonl.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(kept)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:  # disk full: the old file stays whole, no temp file is left
            tmp.unlink(missing_ok=True)
            raise
        if self._fd is not None:  # the old descriptor points at the replaced file
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        for key in drop:
            del self.records[key]
        self._lines = []  # offsets are stale; only needed once per open
        return len(errors), len(stale)

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Queue rows (never in read-only mode); they reach the disk at the next :meth:`flush` (automatic by size/age)."""
        if self.read_only:
            raise RuntimeError("this JudgmentStore is read-only")
        for row in rows:
            key = row_key(row)
            self.records[key] = record_of(row)
            self._keys.append(key)
            self._buffer.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        if len(self._buffer) >= FLUSH_ROWS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write queued rows as one append and fsync it.

        A write that fails (disk full) is cut back to the batch's start, so the file never
        holds a torn line, and its rows are no longer counted as done; the error is raised.
        """
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        assert self._fd is not None, "read-only stores never flush"
        data = ("\n".join(self._buffer) + "\n").encode("utf-8")
        keys = self._keys
        self._buffer.clear()
        self._keys = []
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            write_all(self._fd, data, sync=True)
        except BaseException:
            os.ftruncate(self._fd, start)
            for key in keys:
                self.records.pop(key, None)
            raise

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _append_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        write_all(fd, data, sync=True)
    finally:
        os.close(fd)
