"""Control replies: candidate replies of known quality, built from the data without a model.

A judge earns trust when it scores the reference reply (``control:gold``) above replies
that are known in advance to be worse on a dimension. Each control is a plain record
(``item_id``, ``model = "control:<kind>"``, ``reply``, ``predicted_strategy``) that enters
the judge exactly like a model's candidate reply; the judge check
(:mod:`csc_harness.analysis.judge_check`) is an analysis over the resulting judgments.

:data:`CONTROLS` is the one table of kinds: which dimensions each control is expected to
lower and what it is. The code, the judge check and the README all read it.

Every choice is deterministic: a pick is a SHA-256 of ``seed``, the kind and the item id
(never Python's ``hash()``, which changes between processes), so the same data and seed
give the same controls on every machine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from .data import Example
from .errors import UserError
from .framework import BY_CODE, Stage, format_reply

__all__ = [
    "CONTROLS", "CONTROL_PREFIX", "ControlKind", "ControlRecord", "ControlSpec", "EVERY",
    "GOLD", "KINDS", "RUN_CONTROLS", "WRONG_LABEL", "build_controls", "control_kind",
    "expected_to_lower", "parse_controls", "sample_dialogues",
]

ControlKind = Literal["gold", "mismatch", "truncated", "generic", "wrong-label", "padded"]
KINDS: tuple[ControlKind, ...] = get_args(ControlKind)
CONTROL_PREFIX = "control:"
GOLD = CONTROL_PREFIX + "gold"
EVERY = "*"
"""In :attr:`ControlSpec.lowers`: every dimension the judge scores."""


@dataclass(frozen=True)
class ControlSpec:
    lowers: tuple[str, ...]
    """Dimension ids a fair judge scores lower than gold (``EVERY``: all of them)."""
    description: str
    """One line: what the control reply is."""
    contrast: str
    """How a failure reads: "cannot tell <contrast> from the right one on <dimension>"."""


CONTROLS: dict[ControlKind, ControlSpec] = {
    "gold": ControlSpec(
        (), "the reference reply with its gold strategy label", "the reference reply"),
    "mismatch": ControlSpec(
        (EVERY,), "the reference reply of another conversation at the same stage (same "
        "language and strategy where possible), with its own label",
        "a reply from another conversation"),
    "truncated": ControlSpec(
        ("problem_resolution", "strategy_adherence"), "the reference reply cut to its "
        "first clause, or to 30% of its characters when the clause is longer; label kept",
        "a reply cut short"),
    "generic": ControlSpec(
        ("problem_resolution", "strategy_adherence"), "a fixed non-answer in the item's "
        "language (请您稍等。 / Please hold on.) labelled with the gold strategy",
        "a stock non-answer"),
    "wrong-label": ControlSpec(
        ("strategy_adherence",), "the reference text labelled with a strategy that "
        "clearly does not fit it (opening for a later turn, closing for an early one)",
        "a wrong strategy label"),
    "padded": ControlSpec(
        (), "the reference reply followed by polite filler of about its own length that "
        "adds nothing; a fair judge must not score it higher (verbosity probe)",
        "a reply padded with empty politeness"),
}

RUN_CONTROLS: tuple[ControlKind, ...] = ("gold", "mismatch", "padded")
"""A small default for the main job: mismatch lowers every dimension, padded probes
verbosity bias, so every dimension gets a verdict at a third of the full cost."""


def expected_to_lower(kind: str, dimension: str) -> bool:
    """True when ``kind`` (with or without ``control:``) should score below gold on it."""
    spec = CONTROLS.get(kind.removeprefix(CONTROL_PREFIX))  # type: ignore[call-overload]
    return spec is not None and (EVERY in spec.lowers or dimension in spec.lowers)


def control_kind(model: str) -> ControlKind | None:
    """``"mismatch"`` for ``"control:mismatch"``; None for a model that is not a control."""
    if not model.startswith(CONTROL_PREFIX):
        return None
    kind = model[len(CONTROL_PREFIX):]
    return kind if kind in CONTROLS else None  # type: ignore[return-value]


def parse_controls(values: Iterable[str] | None) -> tuple[ControlKind, ...]:
    """Kinds named on a command line (``--controls mismatch padded``), gold always first.

    None or ``all`` means every kind; ``none`` means no controls at all (empty tuple).
    Accepts ``control:<kind>`` too. Raises UserError naming an unknown kind.
    """
    names = [part.strip() for value in (values or ["all"]) for part in value.split(",")
             if part.strip()]
    if names == ["none"]:
        return ()
    if "all" in names:
        return KINDS
    chosen: list[ControlKind] = ["gold"]
    for name in names:
        kind = name.removeprefix(CONTROL_PREFIX)
        if kind not in CONTROLS:
            raise UserError(f"unknown control {name!r}; valid: {', '.join(KINDS)}, all, none")
        if kind not in chosen:
            chosen.append(kind)  # type: ignore[arg-type]
    if len(chosen) < 2:
        raise UserError("choose at least one control besides gold (or 'none' to skip)")
    return tuple(chosen)


@dataclass(frozen=True)
class ControlRecord:
    """One control reply: a candidate row like any model's."""

    item_id: str
    model: str
    """``control:<kind>``."""
    reply: str
    predicted_strategy: str
    """The strategy code the control claims."""
    source: str = ""
    """Where the text came from (``mismatch``: the donor item id), for provenance."""

    def to_row(self) -> dict[str, str]:
        """A ``candidates.jsonl`` row (:data:`csc_harness.contract.CANDIDATE_FIELDS`), so
        ``csc-harness judge --candidates`` judges controls like any model's replies."""
        return {"item_id": self.item_id, "model": self.model, "reply": self.reply,
                "raw": format_reply(self.predicted_strategy, self.reply),
                "predicted_strategy": self.predicted_strategy, "setting": "reference"}


# --------------------------------------------------------------------------- rules

GENERIC: dict[str, tuple[str, ...]] = {
    "zh": ("请您稍等。", "好的，请稍候。"),
    "en": ("Please hold on.", "One moment, please."),
}
"""The fixed non-answer per language; the second is used when gold is the first."""

PADDING: dict[str, tuple[str, ...]] = {
    "zh": ("我们非常重视您的每一个问题。", "感谢您的耐心与理解。", "您的满意是我们一直以来的追求。",
           "我们会一如既往地为您提供优质的服务。", "请您放心，我们始终把您的需求放在第一位。",
           "再次感谢您对我们工作的支持。"),
    "en": ("We truly value every question you bring to us.",
           "Thank you for your patience and understanding.",
           "Your satisfaction is always our highest priority.",
           "We remain committed to providing you with excellent service.",
           "Please rest assured that your needs always come first for us.",
           "Thank you again for your continued support."),
}
"""Polite filler that adds no information, appended until it is as long as the reply."""

_EARLY = {Stage.CONNECTING, Stage.IDENTIFYING}
WRONG_LABEL: dict[str, str] = {
    code: ("AC" if s.default_stage in _EARLY or s.default_stage is None else "GT")
    for code, s in BY_CODE.items()
}
"""The wrong-label rule: a strategy whose stage is Connecting or Identifying (and Others)
gets Appreciation and Closure (a closing move); every later strategy gets Greeting (an
opening move, "used only at the start"). The label is always at least two stages away
from the gold strategy's stage."""

TRUNCATE_SHARE = 0.3
_CLAUSE_END = re.compile(r"[，。！？；：、,.!?;:](?=\s|$)|[，。！？；：、]")


def _draw(seed: int, kind: str, key: str) -> int:
    digest = hashlib.sha256(f"{seed}\x1f{kind}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def truncate(text: str) -> str | None:
    """The first clause when it fits in 30% of the characters, else the first 30% (whole
    words in a text with spaces); at least one character. None when nothing shorter than
    the text remains (a one-character reply)."""
    limit = max(1, int(len(text) * TRUNCATE_SHARE))
    match = _CLAUSE_END.search(text)
    if match and match.end() <= limit:
        cut = text[:match.end()]
    else:
        cut = text[:limit]
        space = cut.rfind(" ")
        if " " in text and space > 0 and text[limit:limit + 1] != " ":
            cut = cut[:space]
    cut = cut.rstrip()
    return cut if cut and len(cut) < len(text.rstrip()) else None


def pad(text: str, language: str, key: str, seed: int = 0) -> str:
    """``text`` followed by filler phrases (a seeded order) of at least its own length."""
    phrases = PADDING.get(language, PADDING["en"])
    start = _draw(seed, "padded", key) % len(phrases)
    joiner = "" if language == "zh" else " "
    filler: list[str] = []
    i = start
    while len(joiner.join(filler)) < len(text):
        filler.append(phrases[i % len(phrases)])
        i += 1
    return f"{text}{joiner}{joiner.join(filler)}"


def generic(item: Example) -> str:
    forms = GENERIC.get(item.language, GENERIC["en"])
    return forms[1] if item.reply.strip() == forms[0] else forms[0]


class _Donors:
    """Mismatch donors, indexed by (stage, language, strategy) and its coarser keys."""

    TIERS = (("stage", "language", "strategy"), ("stage", "language"),
             ("stage", "strategy"), ("stage",))

    def __init__(self, pool: Sequence[Example]) -> None:
        ordered = sorted(pool, key=lambda ex: ex.item_id)
        self.index: dict[tuple, list[Example]] = {}
        for ex in ordered:
            for tier in self.TIERS:
                self.index.setdefault(self._key(ex, tier), []).append(ex)

    @staticmethod
    def _key(ex: Example, tier: tuple[str, ...]) -> tuple:
        return (tier, *(getattr(ex, name) for name in tier))

    def pick(self, item: Example, seed: int) -> Example | None:
        """A seeded donor from another conversation with a different text, or None."""
        draw = _draw(seed, "mismatch", item.item_id)
        gold = item.reply.strip()
        for tier in self.TIERS:
            donors = self.index.get(self._key(item, tier), [])
            for step in range(len(donors)):
                donor = donors[(draw + step) % len(donors)]
                if donor.conversation_id != item.conversation_id \
                        and donor.reply.strip() != gold:
                    return donor
        return None


def build_controls(items: Sequence[Example], kinds: Iterable[str] = KINDS, *,
                   pool: Sequence[Example] | None = None, seed: int = 0) -> list[ControlRecord]:
    """Control replies for ``items``, item by item in the order of ``kinds``.

    ``pool`` (default: ``items``) is where mismatch replies come from: pass the whole
    dataset when ``items`` is a subset. An item gets no control of a kind that cannot
    differ from gold (no donor at its stage in another conversation, a one-character
    reply to truncate), so a kind may have fewer records than ``items``.
    """
    chosen = [k.removeprefix(CONTROL_PREFIX) for k in kinds]
    for kind in chosen:
        if kind not in CONTROLS:
            raise UserError(f"unknown control {kind!r}; valid: {', '.join(KINDS)}")
    donors = _Donors(items if pool is None else pool) if "mismatch" in chosen else None
    out: list[ControlRecord] = []
    for item in items:
        for kind in chosen:
            record = _build(kind, item, donors, seed)
            if record is not None:
                out.append(record)
    return out


def _build(kind: str, item: Example, donors: _Donors | None, seed: int) -> ControlRecord | None:
    model = CONTROL_PREFIX + kind
    reply, label, source = item.reply, item.strategy, item.item_id
    if kind == "mismatch":
        donor = donors.pick(item, seed) if donors is not None else None
        if donor is None:
            return None
        reply, label, source = donor.reply, donor.strategy, donor.item_id
    elif kind == "truncated":
        cut = truncate(item.reply)
        if cut is None:
            return None
        reply = cut
    elif kind == "generic":
        reply = generic(item)
    elif kind == "wrong-label":
        label = WRONG_LABEL[item.strategy]
    elif kind == "padded":
        reply = pad(item.reply, item.language, item.item_id, seed)
    return ControlRecord(item.item_id, model, reply, label, source)


def sample_dialogues(items: Sequence[Example], dialogues: int, seed: int = 0,
                     turns: int | None = None) -> list[Example]:
    """The supporter turns of ``dialogues`` conversations chosen in a seeded order, at
    most ``turns`` of each (seeded; None: all).

    The check's intervals resample dialogues, so its precision grows with their number:
    for a fixed number of judge calls, one turn in each of many dialogues beats every turn
    of a few. Items keep their original order.
    """
    if dialogues < 1:
        raise UserError(f"need at least 1 dialogue, got {dialogues}")
    ids = sorted({ex.conversation_id for ex in items},
                 key=lambda c: (_draw(seed, "sample", c), c))
    keep = set(ids[:dialogues])
    chosen = [ex for ex in items if ex.conversation_id in keep]
    if turns is None:
        return chosen
    per_dialogue: dict[str, list[Example]] = {}
    for ex in sorted(chosen, key=lambda e: (_draw(seed, "turn", e.item_id), e.item_id)):
        per_dialogue.setdefault(ex.conversation_id, []).append(ex)
    picked = {ex.item_id for group in per_dialogue.values() for ex in group[:turns]}
    return [ex for ex in chosen if ex.item_id in picked]
