"""JSON files shared by every layer: JSONL rows read with one-line errors that name the
file and line, and JSON written atomically so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import DataError, UserError


def json_loads() -> Callable[[bytes], Any]:
    """orjson's parser when it is installed (about 2.5x faster on big files), else json's.

    Both accept exactly JSON; orjson also rejects the NaN/Infinity literals json allows.
    """
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; DataError for anything else."""
    loads = json_loads()
    try:
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})",
                                    path=str(path), line=lineno) from None
                except UnicodeDecodeError as exc:
                    raise DataError(f"not UTF-8 text ({exc.reason})", path=str(path),
                                    line=lineno) from None
                if not isinstance(obj, dict):
                    raise DataError(f"expected a JSON object, got {type(obj).__name__}",
                                    path=str(path), line=lineno)
                yield lineno, obj
    except OSError as exc:
        raise UserError(f"cannot read {str(path)!r}: {exc.strerror}") from None


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
