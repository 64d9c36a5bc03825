"""Probability-weighted scores (G-Eval): the expected score under the judge's token
distribution at the position where it wrote the score.

Multi-digit scores are handled explicitly (DeepEval's "10" bug): when the tokenizer merges
digits (some alternative has two or more digits, as with OpenAI and Llama 3 tokenizers) each
digit token is a complete score; when it splits digits (Qwen) and the judge wrote "1", the
next position's distribution splits the mass between 1 and 10. A "1" that is only an
alternative (the judge wrote another score) cannot be split: its mass is bounded between
the two readings and the result is returned only when the bounds differ by less than
:data:`AMBIGUITY_TOLERANCE`. No logprobs, no alignment or no score alternatives give None:
there is never a silent fallback to the plain score.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = ["AMBIGUITY_TOLERANCE", "weighted_score"]

AMBIGUITY_TOLERANCE = 0.05
TopLogprobs = Sequence[Sequence[tuple[str, float]]]

_DIGITS = re.compile(r"[\s\"':*=\[]*(\d+)[\s\"',}\]*.]*")
_LEADING = re.compile(r"(\d+)")
_PREFIX_OK = set(" \t\n\"':*=[")


def _digits(token: str) -> str | None:
    match = _DIGITS.fullmatch(token)
    return match.group(1) if match else None


def _locate(text: str, tokens: TopLogprobs, at: int) -> tuple[int, int, str] | None:
    """Index, start offset and text of the generated token covering ``text[at]``.

    The chosen token at each position is not recorded separately, so the path is found by
    aligning alternatives to the answer text backwards from its end (the score sits near
    the end, so odd tokens earlier in a long rationale do not matter).
    """
    frontier: dict[int, None] = {len(text): None}
    for index in range(len(tokens) - 1, -1, -1):
        following: dict[int, None] = {}
        for end in frontier:
            for token, _lp in tokens[index]:
                start = end - len(token)
                if not token or start < 0 or text[start:end] != token:
                    continue
                if start <= at < end:
                    return index, start, token
                following.setdefault(start, None)
        if not following:
            return None
        frontier = following
    return None


def _split_prefix(prefix: str, mass: float, following: Sequence[tuple[str, float]],
                  valid: range) -> dict[int, float] | None:
    """Share ``mass`` of a chosen digit prefix between the scores it can start."""
    stop, carry = 0.0, {}
    for token, lp in following:
        p = math.exp(lp)
        lead = _LEADING.match(token)
        if lead is None:
            stop += p
            continue
        value = int(prefix + lead.group(1))
        if value in valid:
            carry[value] = carry.get(value, 0.0) + p
    total = stop + sum(carry.values())
    if total <= 0:
        return None
    shares = {v: mass * q / total for v, q in carry.items()}
    if int(prefix) in valid:
        shares[int(prefix)] = shares.get(int(prefix), 0.0) + mass * stop / total
    return shares


def weighted_score(text: str, top_logprobs: TopLogprobs | None, span: tuple[int, int] | None,
                   scale: tuple[int, int]) -> float | None:
    """Expected score at the score token, or None when it cannot be computed faithfully.

    ``span`` is the character span of the written score in ``text`` (from the parser);
    ``top_logprobs`` are the per-token alternatives from the provider.
    """
    if not top_logprobs or span is None:
        return None
    located = _locate(text, top_logprobs, span[0])
    if located is None:
        return None
    index, offset, chosen = located
    if any(c not in _PREFIX_OK for c in text[offset:span[0]]):
        return None
    chosen_digits = _digits(chosen)
    written = text[span[0]:span[1]]
    if chosen_digits is None or not written.startswith(chosen_digits):
        return None
    valid = range(scale[0], scale[1] + 1)
    alternatives = [(d, math.exp(lp)) for t, lp in top_logprobs[index] if (d := _digits(t))]
    merged = any(len(d) > 1 for d, _ in alternatives)
    following = top_logprobs[index + 1] if index + 1 < len(top_logprobs) else None
    probs: dict[int, float] = {}
    ambiguous: list[tuple[float, list[int]]] = []
    for digits, p in alternatives:
        longer = [v for v in valid if len(str(v)) > len(digits) and str(v).startswith(digits)]
        if merged or not longer:
            if int(digits) in valid:
                probs[int(digits)] = probs.get(int(digits), 0.0) + p
            continue
        shares = _split_prefix(digits, p, following, valid) \
            if digits == chosen_digits and following else None
        if shares is None:
            readings = longer + ([int(digits)] if int(digits) in valid else [])
            ambiguous.append((p, readings))
            continue
        for value, share in shares.items():
            probs[value] = probs.get(value, 0.0) + share
    mass = sum(probs.values()) + sum(p for p, _ in ambiguous)
    if mass <= 0:
        return None
    base = sum(v * p for v, p in probs.items())
    low = (base + sum(p * min(r) for p, r in ambiguous)) / mass
    high = (base + sum(p * max(r) for p, r in ambiguous)) / mass
    if high - low > AMBIGUITY_TOLERANCE:
        return None
    return (low + high) / 2
