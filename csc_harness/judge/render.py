"""Rendering a template into chat messages, and the JSON schema its verdict must follow.

Delimiters: the dialogue, the candidate reply(s) and the reference sit between tags that
carry a nonce, e.g. ``<reply-amber>`` ... ``</reply-amber>`` (:mod:`csc_harness.quoting`),
keyed by the prompt id and the conversation id, and one that none of the item's quoted
content contains. Every item of a conversation thus gets the same tags, so consecutive
calls share the prompt prefix up to the end of the dialogue (prompt caching, llama.cpp's
KV-cache reuse), and the nonce stays stable (same prompt, same cache key, resumable). A
reply that writes ``</reply>`` or a fake verdict stays inside the block, and
:func:`csc_harness.judge.parse.parse_verdict` ignores every nonce-tagged block the judge
may echo back, so quoted text can never pass for the verdict.

Template variables (documented for prompt authors in ``judge_prompts/README.md``):
``dimensions``, ``dimension`` (the first), ``scale`` (``.min``/``.max``, None for pairwise),
``verdict``, ``mode``, ``language``, ``topic``, ``stage``, ``dialogue`` (turns with
``speaker``, ``text``, ``strategy``), ``reply`` and ``claimed`` (the first candidate),
``replies`` (``.text``, ``.claimed``), ``reference`` (``.strategy``, ``.reply``, or None),
``strategies``, ``nonce``, ``options``, ``goal`` (a simulated customer's goal when a
whole conversation is judged, else None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._jinja import allow_fields, compile_template
from ..data import Example
from ..errors import DataError
from ..framework import BY_CODE, STRATEGIES, Strategy
from ..quoting import nonce_for
from .rubrics import Dimension, Level, TemplateGroup, VerdictFormat

__all__ = ["RenderedPrompt", "Reply", "render_prompt", "response_schema"]


@dataclass(frozen=True)
class Reply:
    """A candidate reply as the judge sees it: text and the strategy code it claims."""

    text: str
    claimed: str | None = None


@dataclass(frozen=True)
class RenderedPrompt:
    messages: tuple[dict[str, str], ...]
    nonce: str


class _Turn(NamedTuple):
    speaker: str
    text: str
    strategy: Strategy | None


class _Scale(NamedTuple):
    min: int
    max: int


class _Shown(NamedTuple):
    text: str
    claimed: Strategy | None


class _Reference(NamedTuple):
    strategy: Strategy
    reply: str


allow_fields(_Turn, _Scale, _Shown, _Reference, Strategy, Dimension, Level)
_static: dict[str, str | None] = {}


def _render(source: str, context: dict[str, Any]) -> str:
    """Render; a template that uses no variable (a typical system.j2) is rendered once."""
    if source not in _static:
        import jinja2.meta

        template = compile_template(source)
        uses = jinja2.meta.find_undeclared_variables(template.environment.parse(source))
        _static[source] = None if uses else template.render().strip()
    text = _static[source]
    return text if text is not None else compile_template(source).render(context).strip()


class _ItemView(NamedTuple):
    """What every template call for one item shares: computed once per item, not per call."""

    item: Example
    dialogue: list[_Turn]
    blob: str


_last_view: list[_ItemView] = []  # one entry: the plan renders an item's calls back to back


def _view(item: Example) -> _ItemView:
    if _last_view and _last_view[0].item is item:
        return _last_view[0]
    dialogue = [_Turn(u.speaker, u.text, BY_CODE.get(u.strategy) if u.strategy else None)
                for u in item.context]
    goal = getattr(item, "goal", None) or ""  # simulated conversations quote it too
    blob = "\x1f".join([item.topic, goal, *(u.text for u in item.context)])
    _last_view[:] = [_ItemView(item, dialogue, blob)]
    return _last_view[0]


def _nonce(prompt_id: str, view: _ItemView, replies: Sequence[Reply], reference: str) -> str:
    """Per conversation, not per item, so one conversation's prompts share their prefix up
    to the end of the dialogue, unless this item's replies or reference hold the code."""
    return nonce_for(f"{prompt_id}\x1e{view.item.conversation_id}",
                     (view.blob, reference, *(r.text for r in replies)))


def render_prompt(group: TemplateGroup, item: Example, replies: Sequence[Reply], *,
                  verdict: VerdictFormat, reference_guided: bool) -> RenderedPrompt:
    """Chat messages asking ``group``'s template to judge ``replies`` to ``item``.

    One reply for absolute grading, two (shown as A then B) for pairwise. The gold
    strategy and reply are shown only when ``reference_guided``. Raises DataError naming
    the template when it uses an undefined variable.
    """
    rubric = group.rubric
    dims = [rubric.dimension(d) for d in group.dimensions]
    reference = _Reference(BY_CODE[item.strategy], item.reply) if reference_guided else None
    view = _view(item)
    nonce = _nonce(rubric.prompt_id, view, replies, item.reply if reference_guided else "")
    shown = [_Shown(r.text, BY_CODE.get(r.claimed) if r.claimed else None) for r in replies]
    context = {
        "dimensions": dims, "dimension": dims[0],
        "scale": _Scale(*rubric.scale) if rubric.scale else None,
        "verdict": verdict, "mode": group.mode, "language": item.language,
        "topic": item.topic, "stage": item.stage,
        "dialogue": view.dialogue,
        "reply": shown[0].text, "claimed": shown[0].claimed, "replies": shown,
        "reference": reference, "strategies": STRATEGIES, "nonce": nonce,
        "options": rubric.options,
        # whole simulated conversations carry the customer's goal (simulate.judging)
        "goal": getattr(item, "goal", None),
    }
    messages = []
    try:
        if rubric.system_source is not None:
            messages.append({"role": "system", "content": _render(rubric.system_source, context)})
        messages.append({"role": "user", "content": _render(rubric.prompt_source, context)})
    except Exception as exc:
        raise DataError(f"template error: {type(exc).__name__}: {exc}",
                        path=str(rubric.path)) from None
    return RenderedPrompt(tuple(messages), nonce)


def response_schema(group: TemplateGroup, verdict: VerdictFormat) -> dict[str, Any]:
    """The JSON schema sent as ``response_format`` (the client negotiates the form).

    Absolute, one dimension: ``{"rationale", "score"}`` (or ``{"score"}``); several
    dimensions: one such object per dimension id (score-only: the bare integer);
    pairwise: ``{"rationale", "winner": "A"|"B"|"tie"}``. Rationale first, so a model
    that follows the schema's order reasons before it scores.
    """
    if group.mode == "pairwise":
        winner = {"type": "string", "enum": ["A", "B", "tie"]}
        return _object({"rationale": {"type": "string"}, "winner": winner}
                       if verdict == "rationale_first" else {"winner": winner})
    lo, hi = group.rubric.scale  # type: ignore[misc]
    score = {"type": "integer", "enum": list(range(lo, hi + 1))}
    single = _object({"rationale": {"type": "string"}, "score": score}
                     if verdict == "rationale_first" else {"score": score})
    if len(group.dimensions) == 1:
        return single
    per_dim = single if verdict == "rationale_first" else score
    return _object({d: per_dim for d in group.dimensions})


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def describe(rendered: RenderedPrompt) -> str:
    """The messages as readable text (for ``--show-prompt`` style debugging and tests)."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in rendered.messages)
