"""How a model is asked for the next supporter turn.

The lm-eval task and the generated-context rollout both build their prompts here,
so the two settings differ only in whose earlier replies fill the context.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

from .data import Utterance
from .framework import BY_CODE, STRATEGIES

_SPEAKER_LABEL = {
    "zh": {"customer": "客户", "supporter": "客服"},
    "en": {"customer": "Customer", "supporter": "Agent"},
}
_NUDGE = {
    "zh": "（客户在等待回复，请写出客服的下一句。）",
    "en": "(The customer is waiting; write the agent's next turn.)",
}


@lru_cache(maxsize=2)
def system_prompt(language: str) -> str:
    """The instructions that explain the twelve strategies and the answer format."""
    import jinja2

    source = (resources.files("csc_harness") / "templates" / "reply_system.j2").read_text("utf-8")
    template = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    return template.from_string(source).render(
        language=language,
        strategies=STRATEGIES,
        example=BY_CODE["PR"],
        example_reply_zh="请问您是在什么时间发现这笔扣款的？",
        example_reply_en="When did you first notice this charge?",
    ).strip()


def reply_messages(context: Sequence[Utterance], language: str) -> list[dict[str, str]]:
    """The dialogue so far as chat messages: customer = user, supporter = assistant.

    A chat model only answers after a user turn, so when the context is empty or
    ends with the supporter, a short bracketed nudge stands in for the customer.
    """
    messages = [{"role": "system", "content": system_prompt(language)}]
    for u in context:
        messages.append({"role": "user" if u.speaker == "customer" else "assistant",
                         "content": u.text})
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": _NUDGE.get(language, _NUDGE["en"])})
    return messages


def transcript(context: Sequence[Utterance], language: str) -> str:
    """The dialogue as plain text ending with an open supporter turn, for
    log-likelihood backends that take no chat messages."""
    labels = _SPEAKER_LABEL.get(language, _SPEAKER_LABEL["en"])
    sep = "：" if language == "zh" else ": "
    lines = [f"{labels[u.speaker]}{sep}{u.text}" for u in context]
    lines.append(f"{labels['supporter']}{sep}".rstrip())
    return "\n".join(lines)
