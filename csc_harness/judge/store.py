"""``OUT/judgments.jsonl``: append-only, line-atomic, resumable.

Rows are written in batches: each batch is one ``write`` on an ``O_APPEND`` descriptor
followed by ``fsync``, so a killed process leaves whole lines plus at most one torn last
line. On open, a torn last line is cut off, the existing rows become the "done" set, and
``error`` rows the coming run will retry are dropped (atomic rewrite), so the file never
holds two rows with one identity. Answers already paid for but not yet written when the
process died are in the provider cache, so redoing them costs no provider call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import DataError
from .rows import row_key

__all__ = ["JUDGMENTS_FILE", "JudgmentStore", "Record"]

JUDGMENTS_FILE = "judgments.jsonl"
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


def record_of(row: dict[str, Any]) -> Record:
    return Record(row.get("kind", "absolute"), row["item_id"], row["model"], row["judge"],
                  row["dimension"], row.get("sample", 0), row["status"], row.get("score"),
                  row.get("winner"), row.get("order"), row.get("model_a"), row.get("model_b"),
                  row.get("cost_usd"), row.get("prompt_tokens"), row.get("completion_tokens"),
                  bool(row.get("cached")))


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
        self._last_flush = time.monotonic()
        self._fd: int | None = None
        if self.path.is_file():
            self._load()
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
                row = json.loads(line) if line.strip() else None
            except ValueError:
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
                self._lines.append((key, start, end + 1))
            good_end = start = end + 1
        if good_end < len(data):
            self.truncated_bytes = len(data) - good_end
            if not self.read_only:
                os.truncate(self.path, good_end)

    def done(self, key: tuple) -> bool:
        record = self.records.get(key)
        return record is not None and record.status != "error"

    def drop_errors(self, keys: Collection[tuple]) -> int:
        """Remove ``error`` rows whose identity is in ``keys`` (they will be retried)."""
        drop = {k for k, r in self.records.items() if r.status == "error" and k in keys}
        if not drop:
            return 0
        data = self.path.read_bytes()
        kept = b"".join(data[s:e] for k, s, e in self._lines if k not in drop)
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "wb") as fh:
            fh.write(kept)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        for key in drop:
            del self.records[key]
        self._lines = []  # offsets are stale; only needed once per open
        return len(drop)

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Queue rows (never in read-only mode); they reach the disk at the next :meth:`flush` (automatic by size/age)."""
        if self.read_only:
            raise RuntimeError("this JudgmentStore is read-only")
        for row in rows:
            self.records[row_key(row)] = record_of(row)
            self._buffer.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        if len(self._buffer) >= FLUSH_ROWS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write queued rows as one append and fsync it."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        if self._fd is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = ("\n".join(self._buffer) + "\n").encode("utf-8")
        self._buffer.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
