"""Anthropic prompt-cache breakpoints on the constant prefix of a model's prompts.

Anthropic caches a prompt prefix only up to an explicit ``cache_control`` breakpoint, and a
later request hits the cache only when its content blocks up to that breakpoint are
byte-identical. Judge prompts put their constant parts first (system prompt, task, rubric,
strategy table) and the conversation after them, but the provider layer is not told where
the constant part ends, so it learns it: the longest common prefix of the first two
distinct first-user-message texts of a route (per template), cut back to a line end and
to before the first nonce-tagged quote (two turns of one conversation also share their
dialogue, which is not constant). From then on, a user message that starts with that
prefix is sent as text blocks, the prefix carrying a breakpoint, and the system prompt
carries one too. The cache key of a request is not
affected: breakpoints change how a request is billed, never its answer.

The conversation prefix shared by later turns of one dialogue gets breakpoints too. The
judge templates quote the dialogue right after the constant part, between
``<dialogue-NONCE>`` tags whose nonce is per conversation, and the turn to grade
after it; the dialogue quoted for turn k is a prefix of the one quoted for turn k+1. So the text from
the constant prefix to the closing ``</dialogue-NONCE>`` tag becomes its own block with a
breakpoint, and when an earlier turn of the same conversation was sent on this route, that
turn's dialogue block is split off in front with its own breakpoint: the request reads the
earlier turn's cache entry and writes one for the next turn. With the system prompt and the
constant prefix that is four breakpoints, Anthropic's maximum.

When the dialogue breakpoint pays: a cache write costs 1.25x the input price once, a read
0.1x, so it pays from the first later turn that reads it; but Anthropic caches no prefix
below the model's minimum (1,024 tokens for Sonnet and Opus, 2,048 for Haiku), so it is set
only when the user message up to the dialogue's end holds :data:`MIN_DIALOGUE_PREFIX_CHARS`
characters (the least that can reach 1,024 tokens, for Chinese at about 2 characters a
token; a shorter English prompt is simply not cached, which costs nothing). Templates
without a ``<dialogue-...>`` block get the first two breakpoints only.

OpenAI-style providers cache identical prefixes of 1,024+ tokens by themselves; for them
the prompts are sent unchanged (the shared prefix stays byte-identical) and the cached
token counts they report are read back (:func:`csc_harness.llm._litellm.cache_tokens`).
"""

from __future__ import annotations

import re
from typing import Any

from ..quoting import NONCE
from .router import common_prefix

__all__ = ["MIN_DIALOGUE_PREFIX_CHARS", "PrefixLearner", "with_breakpoints"]

MIN_PREFIX_CHARS = 512
"""Shorter shared prefixes are not worth a breakpoint (Anthropic ignores prefixes below
~1,024 tokens for Sonnet; a breakpoint below that costs nothing but helps nothing)."""
MIN_DIALOGUE_PREFIX_CHARS = 2048
"""The user message up to the end of the quoted dialogue must be this long for a dialogue
breakpoint (see the module docstring)."""
_EPHEMERAL = {"type": "ephemeral"}
_DIALOGUE_OPEN = re.compile(rf"<dialogue-({NONCE})>")
_QUOTED = re.compile(rf"<[a-z_]+-{NONCE}>")
"""Opening tag of quoted data (``<topic-amber>``): its nonce is per conversation."""


class PrefixLearner:
    """Constant prefixes of one route's first user messages (one per template), learned
    from pairs of texts that share at least :data:`MIN_PREFIX_CHARS` characters."""

    MAX_PREFIXES = 16
    MAX_SAMPLES = 8
    MAX_CONVERSATIONS = 512
    """Conversations whose last dialogue blocks are remembered (oldest forgotten first)."""
    MAX_TURNS = 4

    def __init__(self) -> None:
        self.prefixes: list[str] = []
        self._samples: list[str] = []
        self._dialogues: dict[str, list[str]] = {}

    def earlier_dialogue(self, block: str) -> str | None:
        """The longest dialogue block sent before for the same conversation that ``block``
        starts with (None if none); remembers ``block`` for the conversation's later turns."""
        opened = _DIALOGUE_OPEN.search(block)
        if opened is None:
            return None
        conversation = block[:opened.end()]
        seen = self._dialogues.pop(conversation, [])
        earlier = max((d for d in seen if block.startswith(d)), key=len, default=None)
        kept = [d for d in seen if not block.startswith(d)][-(self.MAX_TURNS - 1):]
        self._dialogues[conversation] = [*kept, block]  # re-inserted: most recent last
        if len(self._dialogues) > self.MAX_CONVERSATIONS:
            del self._dialogues[next(iter(self._dialogues))]
        return earlier

    def observe(self, text: str) -> str | None:
        """Feed a first-user-message text; returns its learned prefix (None if none yet)."""
        for prefix in self.prefixes:
            if text.startswith(prefix):
                return prefix
        if len(self.prefixes) >= self.MAX_PREFIXES:
            return None
        for sample in self._samples:
            if sample == text:
                continue
            shared = common_prefix(sample, text)
            quoted = _QUOTED.search(text, 0, shared)
            # two turns of one conversation share their quoted dialogue too: the constant
            # part ends before the first nonce-tagged (per-conversation) quote
            cut = text.rfind("\n", 0, quoted.start() if quoted else shared) + 1
            if cut >= MIN_PREFIX_CHARS:
                self._samples.remove(sample)
                self.prefixes.append(text[:cut])
                return text[:cut]
        self._samples = [*self._samples[-(self.MAX_SAMPLES - 1):], text]
        return None


def with_breakpoints(messages: list[dict[str, Any]], learner: PrefixLearner | None
                     ) -> list[dict[str, Any]]:
    """Messages with ``cache_control`` on the system prompt and on the learned constant
    prefix of the first user message (new dicts; the request's own are not mutated)."""
    out: list[dict[str, Any]] = []
    user_seen = False
    for message in messages:
        content = message.get("content")
        if message.get("role") == "system" and isinstance(content, str) and content:
            message = {**message, "content": [
                {"type": "text", "text": content, "cache_control": _EPHEMERAL}]}
        elif message.get("role") == "user" and not user_seen and isinstance(content, str):
            user_seen = True
            prefix = learner.observe(content) if learner is not None else None
            if not (prefix and content.startswith(prefix) and len(content) > len(prefix)):
                prefix = ""
            blocks = _user_blocks(content, prefix, learner)
            if len(blocks) > 1:
                message = {**message, "content": blocks}
        out.append(message)
    return out


def _user_blocks(content: str, prefix: str, learner: PrefixLearner | None
                 ) -> list[dict[str, Any]]:
    """The first user message as text blocks: the constant prefix, the earlier turn's
    dialogue, this turn's dialogue (each with a breakpoint), then the rest."""
    blocks = []
    if prefix:
        blocks.append({"type": "text", "text": prefix, "cache_control": _EPHEMERAL})
    opened = _DIALOGUE_OPEN.search(content, len(prefix))
    end = content.find(f"</dialogue-{opened.group(1)}>", opened.end()) if opened else -1
    if learner is not None and end >= max(MIN_DIALOGUE_PREFIX_CHARS, len(prefix) + 1):
        dialogue = content[len(prefix):end]
        earlier = learner.earlier_dialogue(dialogue)
        if earlier and len(earlier) < len(dialogue):
            blocks.append({"type": "text", "text": earlier, "cache_control": _EPHEMERAL})
            dialogue = dialogue[len(earlier):]
        blocks.append({"type": "text", "text": dialogue, "cache_control": _EPHEMERAL})
    else:
        end = len(prefix)
    if not blocks:
        return [{"type": "text", "text": content}]
    blocks.append({"type": "text", "text": content[end:]})
    return blocks
