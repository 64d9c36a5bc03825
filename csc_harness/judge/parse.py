"""Judge answers to verdicts: one verdict outside any quoted text, or none.

An answer is read in three passes. (1) Every block between nonce tags (the dialogue and
replies the judge may echo) is blanked out, and so is every verbatim copy of a quoted
text (a judge may repeat the reply without its tags), so quoted content can never be the
verdict. (2) Candidate verdicts are collected: every JSON object holding the expected
keys, plus lines such as ``Score: 4``, ``empathy: 4`` or ``[RESULT] 4`` unless a
structured (JSON) answer was asked for and the answer holds a JSON verdict. (3) Per dimension the candidates must
agree: one value binds (the last one supplies the rationale); candidates that disagree
make the verdict ``invalid`` ("conflicting verdicts") instead of letting text the reply
planted after the judge's own verdict win.

A verdict is ``ok`` with a whole-number score on the scale; ``invalid`` when nothing
parses, the score is off the scale or not whole (never turned into 0 or the minimum);
``refused`` when the provider flagged a refusal or the answer declines and has no verdict.
``error`` (provider failure) is decided by the runner, not here. Parsing is pure, so stored
raw answers can be re-parsed without new calls.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Status", "Verdict", "mask_quoted", "parse_pairwise", "parse_verdict"]

Status = Literal["ok", "invalid", "refused", "error"]
Winner = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class Verdict:
    """One dimension's parsed verdict; ``span`` locates the score in the answer text."""

    status: Status
    score: float | None = None
    rationale: str | None = None
    winner: Winner | None = None
    reason: str | None = None
    """Why the verdict is not ok (for summaries; the raw answer is kept in the row)."""
    span: tuple[int, int] | None = None


_NUMBER = r"(-?\d+(?:\.\d+)?)"
_OUT_OF = r"(?:[ \t]*(?:/|out of|分(?:制)?)[ \t]*\d+)?"
_LINE_LEAD = r"(?im)^[ \t>*#_\-]*(?:final[ \t]+|overall[ \t]+)?"
_SCORE_LINE = re.compile(
    _LINE_LEAD + r"(?:score|rating|grade|评分|得分|分数)[ \t*_]*[:：=][ \t*_]*\[?" + _NUMBER
    + r"\]?" + _OUT_OF + r"[ \t*_.。]*$")
_RESULT = re.compile(r"\[RESULT\][ \t]*\[?" + _NUMBER + r"\]?")
_WINNER_LINE = re.compile(
    _LINE_LEAD + r"(?:winner|verdict|better(?:[ \t]+reply)?)[ \t*_]*[:：=][ \t*_]*"
    r"\[{0,2}\"?(A|B|tie|C)\"?\]{0,2}[ \t*_.]*$")
_WINNER_BRACKETS = re.compile(r"\[\[(A|B|C|tie)\]\]", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\bI[ \t]*(?:'m|am)[ \t]+(?:sorry|unable|not able)\b"
    r"|\bI[ \t]+(?:can(?:no|')t|cannot|won't|will not)[ \t]+(?:help|assist|evaluate|grade|rate"
    r"|score|judge|comply|provide|do that)"
    r"|(?:无法|不能)(?:协助|帮助|评估|评分|完成|提供)|很抱歉", re.IGNORECASE)
_RATIONALE_KEYS = ("rationale", "reasoning", "explanation", "feedback", "reason")
_TIES = {"tie", "c", "draw", "equal", "none", "neither"}


_MIN_QUOTE = 8  # shorter texts are too likely to occur in the judge's own words


def mask_quoted(text: str, nonce: str | None, quoted: Sequence[str] = ()) -> str:
    """``text`` with every ``<tag-NONCE>...</tag-NONCE>`` block (or an unclosed one, to the
    end) and every verbatim copy of a ``quoted`` text replaced by spaces of the same
    length, so offsets into the text stay valid."""
    if nonce and nonce in text:
        pattern = re.compile(rf"<([A-Za-z]+(?:-[AB])?)-{re.escape(nonce)}>.*?"
                             rf"(?:</\1-{re.escape(nonce)}>|\Z)", re.DOTALL)
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    for quote in sorted({q.strip() for q in quoted}, key=len, reverse=True):
        if len(quote) >= _MIN_QUOTE and quote in text:
            text = text.replace(quote, " " * len(quote))
    return text


def _json_objects(text: str) -> list[tuple[int, int, dict]]:
    """Every JSON object in ``text`` (nested ones too) as ``(start, end, object)``."""
    decoder = json.JSONDecoder()
    found = []
    start = text.find("{")
    while start != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            pass
        else:
            if isinstance(obj, dict):
                found.append((start, end, obj))
        start = text.find("{", start + 1)
    return found


def _whole_json(text: str) -> list[tuple[int, int, dict]]:
    """The fast path for structured output: the answer is exactly one JSON object.

    Being the whole answer, it ends last, so when it holds every dimension it is the
    binding verdict and the full scan could find nothing that binds later."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return []
    try:
        obj = json.loads(stripped)
    except ValueError:
        return []
    start = text.index("{")
    return [(start, start + len(stripped), obj)] if isinstance(obj, dict) else []


def _lower_keys(obj: dict) -> dict:
    return {str(k).strip().lower(): v for k, v in obj.items()}


def _rationale(obj: Any) -> str | None:
    if isinstance(obj, dict):
        obj = _lower_keys(obj)
        for key in _RATIONALE_KEYS:
            if isinstance(obj.get(key), str) and obj[key].strip():
                return obj[key].strip()
    return None


def _coerce(value: Any, scale: tuple[int, int]) -> tuple[float | None, str | None]:
    """A whole score on the scale, or None and the reason it is not one."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*" + _NUMBER + r"\s*(?:/\s*\d+)?\s*", value)
        if not match:
            return None, f"score {value!r} is not a number"
        value = float(match.group(1))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"score {value!r} is not a number"
    if value != int(value):
        return None, f"score {value!r} is not a whole number"
    lo, hi = scale
    if not lo <= value <= hi:
        return None, f"score {value:g} is outside the scale {lo}-{hi}"
    return float(value), None


def _span_in(text: str, start: int, end: int, key: str | None) -> tuple[int, int] | None:
    """Where the score value sits inside the JSON object ``text[start:end]``."""
    region = text[start:end]
    if key is not None:
        at = re.search(rf'"{re.escape(key)}"\s*:\s*', region, re.IGNORECASE)
        if at is None:
            return None
        direct = re.match(r'"?' + _NUMBER, region[at.end():])
        if direct:
            return start + at.end() + direct.start(1), start + at.end() + direct.end(1)
        region_start = at.end()
        match = re.search(r'"score"\s*:\s*"?' + _NUMBER, region[region_start:], re.IGNORECASE)
        if match is None:
            return None
        offset = start + region_start
        return offset + match.start(1), offset + match.end(1)
    matches = list(re.finditer(r'"score"\s*:\s*"?' + _NUMBER, region, re.IGNORECASE))
    return (start + matches[-1].start(1), start + matches[-1].end(1)) if matches else None


def _from_json(obj: dict, dim: str, single: bool) -> tuple[Any, str | None, str | None] | None:
    """``(value, rationale, key holding it)`` for ``dim`` in a JSON object, or None."""
    keys = _lower_keys(obj)
    nested = keys.get(dim.lower())
    if isinstance(nested, dict) and "score" in _lower_keys(nested):
        return _lower_keys(nested)["score"], _rationale(nested), dim
    if nested is not None and not isinstance(nested, (dict, list)):
        return nested, _rationale(obj), dim
    if single and "score" in keys:
        return keys["score"], _rationale(obj), None
    return None


@functools.lru_cache(maxsize=256)
def _dimension_line(dim: str) -> re.Pattern:
    name = re.escape(dim).replace("_", "[_ ]")
    return re.compile(_LINE_LEAD + rf"{name}(?:[ \t]+score)?[ \t*_]*[:：=][ \t*_]*\[?"
                      + _NUMBER + r"\]?" + _OUT_OF + r"[ \t*_.。]*$")


def _line_candidates(masked: str, dim: str, single: bool) -> list[re.Match]:
    found = list(_dimension_line(dim).finditer(masked))
    if single:
        found += list(_SCORE_LINE.finditer(masked)) + list(_RESULT.finditer(masked))
    return found


def parse_verdict(text: str | None, dimensions: Sequence[str], scale: tuple[int, int], *,
                  nonce: str | None = None, refusal: str | None = None,
                  quoted: Sequence[str] = (), structured: bool = False) -> dict[str, Verdict]:
    """One :class:`Verdict` per dimension id from a judge's answer (see module docstring).

    With one dimension a bare ``{"score": N}`` or ``Score: N`` counts; with several, each
    dimension needs its own key (``{"empathy": {"score": N}}``, ``{"empathy": N}`` or an
    ``empathy: N`` line). A dimension missing from the answer is invalid. ``quoted``: texts
    shown to the judge as data (the replies); ``structured``: the answer was asked for as
    JSON and the server took the request, so when it holds a JSON verdict only that counts.
    """
    dims = list(dimensions)
    if refusal:
        return {d: Verdict("refused", reason=f"provider refusal: {refusal}") for d in dims}
    text = text or ""
    if not text.strip():
        return {d: Verdict("invalid", reason="empty answer") for d in dims}
    masked = mask_quoted(text, nonce, quoted)
    single = len(dims) == 1
    whole = _whole_json(masked)
    if whole:  # one object that is the whole answer: nothing else can compete
        start, end, obj = whole[0]
        found = {d: _from_json(obj, d, single) for d in dims}
        if all(got is not None for got in found.values()):
            return {d: _verdict([(end, start, got[0], got[1],
                                  _span_in(masked, start, end, got[2]))], scale)
                    for d, got in found.items()}
    objects = _json_objects(masked)
    verdicts = {}
    for dim in dims:
        found_all = []
        for start, end, obj in objects:
            got = _from_json(obj, dim, single)
            if got is not None:
                value, why, key = got
                found_all.append((end, start, value, why, _span_in(masked, start, end, key)))
        if not structured or not found_all:  # a server may ignore the format it took
            for match in _line_candidates(masked, dim, single):
                before = text[:match.start()].strip()
                found_all.append((match.end(), match.start(), match.group(1), before or None,
                                  match.span(1)))
        verdicts[dim] = _verdict(_outermost(found_all), scale)
    if all(v.reason == "no verdict found" for v in verdicts.values()) and _REFUSAL.search(masked):
        return {d: Verdict("refused", reason="the judge declined to grade") for d in dims}
    return verdicts


def _outermost(found: list[tuple]) -> list[tuple]:
    """Candidates not lying inside another candidate (a JSON object's nested copy of the
    same verdict is one verdict, not two), last-ending first."""
    found = sorted(found, key=lambda c: (c[0], -c[1]), reverse=True)
    return [c for c in found
            if not any(o is not c and o[1] <= c[1] and c[0] <= o[0] and o[:2] != c[:2]
                       for o in found)]


def _verdict(found: list[tuple], scale: tuple[int, int]) -> Verdict:
    if not found:
        return Verdict("invalid", reason="no verdict found")
    coerced = [(_coerce(c[2], scale), c) for c in found]
    values = sorted({score for (score, _), _c in coerced if score is not None})
    if len(values) > 1 or (values and any(score is None for (score, _), _c in coerced)):
        shown = ", ".join(str(c[2]) for c in reversed(found))
        return Verdict("invalid", rationale=found[0][3],
                       reason=f"conflicting verdicts ({shown})")
    (score, reason), (_end, _start, _value, rationale, span) = coerced[0]
    if score is None:
        return Verdict("invalid", rationale=rationale, reason=reason)
    return Verdict("ok", score=score, rationale=rationale, span=span)


def _winner(value: Any) -> Winner | None:
    if not isinstance(value, str):
        return None
    word = value.strip().strip("[]\"'*. ").lower()
    if word in ("a", "reply a", "response a"):
        return "A"
    if word in ("b", "reply b", "response b"):
        return "B"
    return "tie" if word in _TIES else None


def parse_pairwise(text: str | None, *, nonce: str | None = None, refusal: str | None = None,
                   quoted: Sequence[str] = (), structured: bool = False) -> Verdict:
    """Which reply the judge preferred: ``winner`` is ``"A"``, ``"B"`` or ``"tie"``.

    Reads ``{"winner": ...}`` objects and, unless ``structured``, ``Winner: A`` lines and
    MT-Bench style ``[[A]]`` / ``[[C]]`` (tie) marks; marks that disagree are invalid.
    """
    if refusal:
        return Verdict("refused", reason=f"provider refusal: {refusal}")
    text = text or ""
    if not text.strip():
        return Verdict("invalid", reason="empty answer")
    masked = mask_quoted(text, nonce, quoted)
    found: list[tuple[int, int, Any, str | None]] = []
    for start, end, obj in _json_objects(masked):
        keys = _lower_keys(obj)
        if "winner" in keys:
            found.append((end, start, keys["winner"], _rationale(obj)))
    if not structured or not found:
        for match in [*_WINNER_LINE.finditer(masked), *_WINNER_BRACKETS.finditer(masked)]:
            found.append((match.end(), match.start(), match.group(1),
                          text[:match.start()].strip() or None))
    found = _outermost(found)
    if not found:
        if _REFUSAL.search(masked):
            return Verdict("refused", reason="the judge declined to compare")
        return Verdict("invalid", reason="no verdict found")
    winners = {_winner(c[2]) for c in found}
    if len(winners) > 1:
        shown = ", ".join(str(c[2]) for c in reversed(found))
        return Verdict("invalid", rationale=found[0][3], reason=f"conflicting verdicts ({shown})")
    winner, best = winners.pop(), found[0]
    if winner is None:
        return Verdict("invalid", rationale=best[3], reason=f"winner {best[2]!r} is not A, B or tie")
    return Verdict("ok", winner=winner, rationale=best[3])
