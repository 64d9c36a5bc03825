"""Human ratings in long format: the reference a judge is compared against.

One rating per line: ``item_id, model, dimension, rater, score`` (CSV with a header, or
JSONL). ``item_id`` and ``model`` name the same candidate reply as the judgment rows do.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, UserError, brief
from ..jsonl import read_jsonl

if TYPE_CHECKING:
    import pandas as pd


def _bad(where: dict[str, Any], name: str, expected: str, value: Any) -> None:
    raise DataError(f"expected {expected}, got {brief(value)}", field=name, **where)

HUMAN_FIELDS = ("item_id", "model", "dimension", "rater", "score")


def load_human_ratings(path: str | Path) -> pd.DataFrame:
    """Human ratings in long format (CSV with a header, or JSONL) as a DataFrame.

    Columns ``item_id, model, dimension, rater`` (text) and ``score`` (float). A blank or
    null score is a missing rating and is skipped; a non-numeric one, a missing column or
    the same rater rating the same (item, model, dimension) twice is a DataError.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"human ratings file {str(path)!r} does not exist")
    rows = _human_jsonl(path) if path.suffix in (".jsonl", ".ndjson") else _human_csv(path)
    seen: dict[tuple[str, ...], int] = {}
    out: list[tuple] = []
    for lineno, rec in rows:
        where = {"path": str(path), "line": lineno}
        values = []
        for name in HUMAN_FIELDS[:4]:
            v = rec.get(name)
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DataError("missing value", field=name, **where)
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                _bad(where, name, "text", v)
            values.append(str(v).strip())
        score = _human_score(rec.get("score"), where)
        if score is None:
            continue
        key = tuple(values)
        if key in seen:
            raise DataError(f"rater {values[3]!r} already rated this (item, model, dimension) "
                            f"on line {seen[key]}", field="rater", **where)
        seen[key] = lineno
        out.append((*values, score))
    if not out:
        raise UserError(f"no ratings in {str(path)!r}; expected columns "
                        f"{', '.join(HUMAN_FIELDS)}")
    df = pd.DataFrame(out, columns=list(HUMAN_FIELDS))
    for name in HUMAN_FIELDS[:4]:
        df[name] = df[name].astype("category")
    return df


def _human_score(raw: Any, where: dict[str, Any]) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        _bad(where, "score", "a number", raw)
    try:
        score = float(raw)
    except (TypeError, ValueError):
        _bad(where, "score", "a number", raw)
    if not math.isfinite(score):
        _bad(where, "score", "a finite number", raw)
    return score


def _human_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    yield from read_jsonl(path)


def _human_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [f for f in HUMAN_FIELDS if f not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"missing column(s) {', '.join(missing)}; the header must "
                                f"name {', '.join(HUMAN_FIELDS)}", path=str(path), line=1,
                                field=missing[0])
            for rec in reader:
                yield reader.line_num, rec
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", path=str(path)) from None
    except csv.Error as exc:
        raise DataError(f"not valid CSV ({exc})", path=str(path)) from None
