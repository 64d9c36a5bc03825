"""Append-only JSONL files that survive kill -9: whole rows or nothing.

A row is written with one ``write`` on an ``O_APPEND`` descriptor, so it lands whole or
not at all from the file's point of view; a final line without its newline (a torn write,
a full disk) is cut off on the next open and that row is simply done again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..contract import JUDGMENTS_FILE, TRANSCRIPTS_FILE
from ..errors import DataError
from ..jsonl import write_all

__all__ = ["TranscriptStore", "append_line", "judgment_paths", "read_rows"]


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, row)`` of every whole line; a torn last line is removed from the file."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(cut)
        data = data[:cut]
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"not a JSON row ({exc}); remove the line or use another --out",
                            path=str(path), line=lineno) from None
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object", path=str(path), line=lineno)
        yield lineno, obj


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Append one row with a single write (see the module docstring)."""
    data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


class TranscriptStore:
    """``OUT/transcripts.jsonl``: finished conversations by ``conversation_id`` and model."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / TRANSCRIPTS_FILE
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        for line, row in read_rows(self.path):
            key = (row.get("conversation_id"), row.get("model"))
            if not all(isinstance(k, str) for k in key) or not isinstance(row.get("turns"), list):
                raise DataError("not a transcript row (needs conversation_id, model, turns); "
                                "remove the line or use another --out", path=str(self.path),
                                line=line)
            self.rows.setdefault(key, row)  # type: ignore[arg-type]

    def has(self, conversation_id: str, model: str) -> bool:
        return (conversation_id, model) in self.rows

    def add(self, row: dict[str, Any]) -> None:
        key = (row["conversation_id"], row["model"])
        if key in self.rows:
            return
        append_line(self.path, row)
        self.rows[key] = row


def judgment_paths(judge_dir: Path) -> list[Path]:
    """The ``judgments.jsonl`` of every rubric variant's folder ``judge_dir/<variant>/``
    (one folder per variant, so each keeps its own ``run.json``)."""
    return sorted(judge_dir.glob(f"*/{JUDGMENTS_FILE}")) if judge_dir.is_dir() else []
