"""JSON files shared by every layer: user files read with one-line errors that name the
file, line and field, and JSON written atomically so a reader never sees half a file.

Every reader of a user file goes through :func:`parse_json`, :func:`read_json` or
:func:`read_jsonl`, which refuse what a hand-edited or hostile file can hold and the rest
of the code does not expect: bytes that are not UTF-8, the ``NaN``/``Infinity`` literals
(and numbers too large for a float), integers past Python's digit limit, lone surrogates
(they cannot be written back as UTF-8) and nesting deeper than the parser's recursion
limit (about 1,000 levels). Each becomes a :class:`DataError` (exit 2).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import DataError, UserError

ORJSON_BRACKETS = 200
"""Documents with more brackets than this are parsed by json, not orjson: orjson 3.8
crashes the process on deeply nested objects, json's C parser raises RecursionError."""

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONSTANT = re.compile(r"-?(?:Infinity|NaN)")


def json_loads() -> Callable[[bytes], Any]:
    """orjson's parser when it is installed (about 2.5x faster on big files), else a
    strict configuration of json's (see :func:`_strict_loads`).

    orjson rejects NaN/Infinity, out-of-range numbers and lone surrogates by itself.
    """
    try:
        import orjson
    except ImportError:
        return _strict_loads
    return orjson.loads


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]!r} is out of range for a float")
    return value


def _int(text: str) -> int | float:
    # As orjson does: integers past 64 bits become floats (and past a float's range, errors).
    value = int(text) if len(text) <= 20 else _finite(text)
    return value if isinstance(value, float) or -2**63 <= value < 2**64 else _finite(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict_loads(raw: bytes | str) -> Any:
    """json.loads refusing what orjson refuses (NaN/Infinity literals, numbers that are
    infinite as floats, strings holding a lone surrogate) and reading integers as it does."""
    value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite,
                       parse_int=_int)
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _SURROGATE_ESCAPE.search(data):
        for item in _walk(value):
            if isinstance(item, str) and not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("a string holds a lone surrogate escape") from None
    return value


def _walk(value: Any) -> Iterator[Any]:
    """Every value nested in ``value`` with its keys, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(raw: bytes | str, *, path: str | Path | None = None, line: int | None = None,
               field: str | None = None, loads: Callable[[bytes], Any] | None = None) -> Any:
    """One JSON document, or a DataError naming ``path``, ``line`` and ``field``.

    ``raw`` may be bytes (checked as UTF-8) or text. Refuses the values described in the
    module docstring.
    """
    where = {"path": None if path is None else str(path), "line": line, "field": field}
    try:
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        if data.count(b"[") + data.count(b"{") > ORJSON_BRACKETS:
            loads = _strict_loads
        value = (loads or json_loads())(data)
    except json.JSONDecodeError as exc:
        if line is None and exc.lineno > 1:
            where["line"] = exc.lineno
        found = _CONSTANT.match(str(exc.doc), exc.pos)
        problem = f"{found.group()} is not valid JSON" if found else exc.msg
        raise DataError(f"invalid JSON ({problem}, column {exc.colno})", **where) from None
    except UnicodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", **where) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", **where) from None
    except ValueError as exc:  # NaN/Infinity, int digit limit
        raise DataError(f"invalid JSON ({str(exc).splitlines()[0][:120]})", **where) from None
    return value


def read_json(path: str | Path, *, what: str = "JSON file",
              root: type | tuple[type, ...] | None = dict) -> Any:
    """The JSON document in ``path``, checked as :func:`parse_json` does.

    ``what`` names the file in messages ("metrics file", "stage map"); ``root`` is the
    type the document must have (an object by default; None accepts any). A missing or
    unreadable file is a UserError, malformed content a DataError.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{what} {str(path)!r} is a folder, not a file") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    value = parse_json(raw.removeprefix(b"\xef\xbb\xbf"), path=path)
    if root is not None and not isinstance(value, root):
        expected = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in (
            root if isinstance(root, tuple) else (root,)))
        raise DataError(f"expected a JSON {expected} at the top, got "
                        f"{_JSON_NAMES.get(type(value), type(value).__name__)}", path=str(path))
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; DataError for anything else."""
    loads = json_loads()
    try:
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if lineno == 1:
                    line = line.removeprefix(b"\xef\xbb\xbf")
                obj = parse_json(line, path=path, line=lineno, loads=loads)
                if not isinstance(obj, dict):
                    raise DataError(f"expected a JSON object, got "
                                    f"{_JSON_NAMES.get(type(obj), type(obj).__name__)}",
                                    path=str(path), line=lineno)
                yield lineno, obj
    except IsADirectoryError:
        raise UserError(f"{str(path)!r} is a folder, not a JSONL file") from None
    except OSError as exc:
        raise UserError(f"cannot read {str(path)!r}: {exc.strerror}") from None


def write_all(fd: int, data: bytes, *, sync: bool = False) -> None:
    """Write every byte (``os.write`` may write less than asked), then fsync if asked."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if sync:
        os.fsync(fd)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename (never a half-written file).

    On failure (disk full, permissions) the temporary file is removed and the error raised:
    the old file, if any, is left whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    data = (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


MAX_FLOW_DEPTH = 100
"""Deepest ``[...]``/``{...}`` nesting read from a YAML file (real ones need 2 or 3)."""


def _flow_depth(text: str) -> int:
    """How deep ``[``/``{`` nest, counting every bracket (quoted ones too: an upper bound)."""
    depth = deepest = 0
    for char in re.findall(r"[\[\]{}]", text):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (safe loader), or a one-line DataError naming the file
    and line: invalid YAML, text that is not UTF-8, nesting past :data:`MAX_FLOW_DEPTH`
    (PyYAML takes seconds on it, then overflows the stack) or an integer past Python's digit
    limit. A missing or unreadable file is a UserError."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if _flow_depth(text) > MAX_FLOW_DEPTH:
            raise RecursionError
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        raise DataError(f"not valid YAML ({' '.join(str(problem).split())})",
                        path=str(path), line=mark.line + 1 if mark else None) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", path=str(path)) from None
    except RecursionError:
        raise DataError("YAML nested too deeply", path=str(path)) from None
    except ValueError as exc:  # an integer past Python's digit limit
        raise DataError(f"not valid YAML ({str(exc).splitlines()[0][:120]})",
                        path=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read {str(path)!r}: {exc.strerror}") from None
