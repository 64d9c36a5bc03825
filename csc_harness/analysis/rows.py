"""Reading judgment rows: the judge module's output, the analysis layer's main input.

The row contract (fields, types, required fields, identity) is :mod:`csc_harness.contract`;
this module validates rows against it. Only the fields analysis uses are kept: rationale
and raw answers are dropped and the reply is kept as its length in characters
(``reply_chars``), so a million rows fit in a few hundred MB. A later line with the same
identity replaces an earlier one (the file is an append-only log). Any malformed line
raises a one-line :class:`DataError` naming the file, line and field.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contract import (
    FIELD_TYPES,
    IDENTITY_DEFAULTS,
    IDENTITY_FIELDS,
    JUDGMENTS_FILE,
    KINDS,
    REQUIRED,
    RUN_FILE,
)
from ..errors import DataError, UserError, brief
from ..framework import Stage
from ..jsonl import read_json, read_jsonl

_STR, _INT, _NUM, _BOOL = "str", "int", "number", "bool"
_COMMON = ("item_id", "judge", "dimension", "status", "kind", "prompt_id", "sample", "variant",
           "mode", "reference_guided", "prompt_tokens", "completion_tokens", "cost_usd",
           "latency_s", "embedded", "input_id", "cache_key")
_ABSOLUTE_NAMES = _COMMON + ("model", "conversation_id", "score", "weighted_score", "scale_min",
                             "scale_max", "turn_index", "stage", "strategy",
                             "predicted_strategy", "topic", "language")
_PAIRWISE_NAMES = _COMMON + ("model", "model_a", "model_b", "conversation_id", "order",
                             "winner")
_CHOICES = {"stage": tuple(s.value for s in Stage)}


def _spec(names: tuple[str, ...], kind: str) -> tuple:
    """(field, type, required, choices) from the contract; nullable unless required."""
    return tuple((name, FIELD_TYPES[name][0], name in REQUIRED[kind],
                  _CHOICES.get(name, FIELD_TYPES[name][1])) for name in names)


_ABSOLUTE = _spec(_ABSOLUTE_NAMES, "absolute")
_PAIRWISE = _spec(_PAIRWISE_NAMES, "pairwise")
_DEFAULTS: dict[str, Any] = {**IDENTITY_DEFAULTS, "embedded": False}
_ABS_KEY = tuple(f for f in IDENTITY_FIELDS if f in _ABSOLUTE_NAMES)
_PAIR_KEY = tuple(f for f in IDENTITY_FIELDS if f in _PAIRWISE_NAMES)


@dataclass
class Judgments:
    """Judgment rows split by kind, as pandas DataFrames with categorical text columns.

    ``absolute`` holds one row per judged sample (plus ``reply_chars`` and ``source``);
    ``pairwise`` the pairwise rows; ``runs`` the parsed ``run.json`` of each folder that
    had one (path -> object).
    """

    absolute: Any
    pairwise: Any
    runs: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def judgment_files(paths: Sequence[str | Path]) -> list[Path]:
    """``judgments.jsonl`` files named by ``paths`` (folders holding it, or files)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = path / JUDGMENTS_FILE
            if not found.is_file():
                nested = sorted(path.rglob(JUDGMENTS_FILE))
                if not nested:
                    raise UserError(f"no {JUDGMENTS_FILE} in {str(path)!r}: pass the --out "
                                    "folder of a `csc-harness judge` run")
                files.extend(nested)
                continue
            files.append(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{str(path)!r} does not exist")
    return files


_CHUNK = 20_000
_NONE = type(None)
_ALLOWED = {_STR: {str}, _INT: {int}, _NUM: {int, float}, _BOOL: {bool}}
_EXPECTED = {_STR: "a string", _INT: "an integer", _NUM: "a number", _BOOL: "true or false"}


def read_chunks(path: Path) -> Iterator[tuple[list[int], list[dict[str, Any]]]]:
    """Parsed lines in chunks of ``(line numbers, objects)``: bounded memory for big files."""
    lines: list[int] = []
    objs: list[dict[str, Any]] = []
    for lineno, obj in read_jsonl(path):
        lines.append(lineno)
        objs.append(obj)
        if len(objs) >= _CHUNK:
            yield lines, objs
            lines, objs = [], []
    if objs:
        yield lines, objs


class _Table:
    """Column-wise builder: validates a chunk of rows one field at a time, then stores
    numbers as float arrays and text as categoricals."""

    def __init__(self, spec: tuple, key: tuple[str, ...]) -> None:
        self.spec, self.key = spec, key
        self.names = [name for name, *_ in spec] + ["reply"]
        self.parts: dict[str, list[Any]] = {name: [] for name, *_ in spec}
        self.parts |= {"reply_chars": [], "source": []}
        self.rows = 0

    def add(self, path: Path, lines: list[int], objs: list[dict[str, Any]]) -> None:
        # One pass over the dicts (they are big and cold in cache), then checks per column.
        rows = [tuple(map(o.get, self.names)) for o in objs]
        errors: list[tuple[int, str, str]] = []
        columns = dict(zip(self.names, zip(*rows)))
        for name, kind, req, choices in self.spec:
            vals = columns[name]
            allowed = _ALLOWED[kind] if req else _ALLOWED[kind] | {_NONE}
            if not set(map(type, vals)) <= allowed:
                errors.append(_first_bad(vals, allowed, kind, name, objs))
            elif choices is not None:
                extra = set(vals) - set(choices) - {None}
                if extra:
                    i = next(i for i, v in enumerate(vals) if v in extra)
                    errors.append((i, name, f"{vals[i]!r} is not one of {', '.join(choices)}"))
        if not set(map(type, columns["reply"])) <= {str, _NONE}:
            errors.append(_first_bad(columns["reply"], {str, _NONE}, _STR, "reply", objs))
        if not errors:
            errors.extend(self._row_rules(columns))
        if errors:
            index, name, message = min(errors)
            raise DataError(message, path=str(path), line=lines[index], field=name)
        self._store(columns, str(path))

    def _row_rules(self, columns: dict[str, Sequence[Any]]) -> list[tuple[int, str, str]]:
        """Rules across fields: verdict present exactly when ok; scores on the scale."""
        import numpy as np

        ok = np.array([s == "ok" for s in columns["status"]])
        verdict = "score" if "score" in columns else "winner"
        given = np.array([v is not None for v in columns[verdict]])
        out = []
        bad = np.flatnonzero(ok != given)
        if len(bad):
            i = int(bad[0])
            message = (f"{verdict} must be set exactly when status is 'ok' (status "
                       f"{columns['status'][i]!r}, {verdict} {brief(columns[verdict][i])})")
            out.append((i, verdict, message))
        if verdict == "score":
            lo = np.array(columns["scale_min"], dtype=float)
            hi = np.array(columns["scale_max"], dtype=float)
            for i in np.flatnonzero(lo >= hi)[:1]:
                message = f"scale_min {int(lo[i])} is not below scale_max {int(hi[i])}"
                out.append((int(i), "scale_min", message))
            for name in ("score", "weighted_score"):
                vals = np.array(columns[name], dtype=float)  # None becomes NaN
                given = np.array([v is not None for v in columns[name]])
                for i in np.flatnonzero(given & ~np.isfinite(vals))[:1]:
                    out.append((int(i), name, f"expected a finite number, got {vals[i]}"))
                for i in np.flatnonzero((vals < lo) | (vals > hi))[:1]:
                    message = f"{vals[i]:g} is outside the scale {int(lo[i])}-{int(hi[i])}"
                    out.append((int(i), name, message))
        return out

    def _store(self, columns: dict[str, Sequence[Any]], source: str) -> None:
        import numpy as np
        import pandas as pd

        for name, kind, _req, _choices in self.spec:
            vals = columns[name]
            if name in _DEFAULTS and _DEFAULTS[name] is not None:
                default = _DEFAULTS[name]
                vals = [default if v is None else v for v in vals]
            if kind in (_INT, _NUM):
                part = np.array(vals, dtype=float)  # None becomes NaN
            elif kind == _BOOL:
                part = pd.array(vals, dtype="boolean")
            else:
                part = pd.Categorical(np.array(vals, dtype=object))
            self.parts[name].append(part)
        replies = columns["reply"]
        self.parts["reply_chars"].append(
            np.array([None if r is None else len(r) for r in replies], dtype=float))
        self.parts["source"].append(pd.Categorical.from_codes(
            np.zeros(len(replies), dtype=np.int8), categories=[source]))
        self.rows += len(replies)

    def frame(self):
        """The rows as a DataFrame; a later row with the same identity replaces an earlier."""
        import numpy as np
        import pandas as pd
        from pandas.api.types import union_categoricals

        data: dict[str, Any] = {}
        for name, parts in self.parts.items():
            if not parts:
                data[name] = pd.Categorical([])
            elif isinstance(parts[0], np.ndarray):
                data[name] = np.concatenate(parts)
            elif isinstance(parts[0], pd.Categorical):
                data[name] = union_categoricals(parts)
            else:
                data[name] = pd.concat([pd.Series(p) for p in parts], ignore_index=True).array
        df = pd.DataFrame(data)
        if "embedded" in df and len(df):
            df["embedded"] = df["embedded"].fillna(False).astype(bool)
        if len(df):
            dup = df.duplicated(subset=list(self.key), keep="last")
            if dup.any():
                df = df[~dup].reset_index(drop=True)
        return df


def _first_bad(vals: list[Any], allowed: set[type], kind: str, name: str,
               objs: list[dict[str, Any]]) -> tuple[int, str, str]:
    for i, v in enumerate(vals):
        if type(v) not in allowed:
            if name not in objs[i]:
                return i, name, f"missing required field {name!r}"
            if v is None:
                return i, name, "must not be null"
            return i, name, f"expected {_EXPECTED[kind]}, got {brief(v)}"
    raise AssertionError("no bad value found")  # pragma: no cover


def load_judgments(paths: Sequence[str | Path]) -> Judgments:
    """Read and validate judgment rows from folders (holding ``judgments.jsonl``) or files.

    Returns absolute and pairwise rows as DataFrames (see the module docstring for the
    contract and the columns kept) plus each folder's ``run.json`` when present.
    Raises :class:`DataError` naming file, line and field for the first malformed line,
    :class:`UserError` when the paths hold no judgments.
    """
    files = judgment_files(paths)
    absolute = _Table(_ABSOLUTE, _ABS_KEY)
    pairwise = _Table(_PAIRWISE, _PAIR_KEY)
    runs: dict[str, Any] = {}
    for path in files:
        run = path.parent / RUN_FILE
        if run.is_file():
            runs[str(run)] = read_json(run, what="run file")
        for lines, objs in read_chunks(path):
            kinds = [o.get("kind", "absolute") for o in objs]
            for i, kind in enumerate(kinds):
                if kind not in KINDS:
                    raise DataError(f"{brief(kind)} is not one of {', '.join(KINDS)}",
                                    path=str(path), line=lines[i], field="kind")
            for kind, table in (("absolute", absolute), ("pairwise", pairwise)):
                picked = [i for i, k in enumerate(kinds) if k == kind]
                if len(picked) == len(objs):
                    table.add(path, lines, objs)
                elif picked:
                    table.add(path, [lines[i] for i in picked], [objs[i] for i in picked])
    if not absolute.rows and not pairwise.rows:
        raise UserError(f"no judgment rows in {', '.join(map(str, files))}")
    return Judgments(absolute.frame(), pairwise.frame(), runs, [str(f) for f in files])
