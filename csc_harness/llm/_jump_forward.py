"""Jump-forward decoding of score-only JSON verdicts in the embedded model's server.

A score-only verdict such as ``{"empathy": 4, "problem_resolution": 3}`` is fixed by its
schema except for the numbers: of its ~24 tokens only one per dimension is the model's
choice. llama.cpp's grammar sampler still decodes every token on its own (~18 ms each on
one core for SmolLM2-135M) and then one more for the end of the answer. Here the forced
text between the numbers is read in one batch, at prompt speed (~6 ms a token), and each
number is the greedy choice among the schema's values after the sampler's repetition
penalties: jump-forward decoding, as SGLang calls it.

Only exact cases take this path: temperature 0; no streaming, logprobs, tools, grammar,
logit bias or logits processors; no RAM prompt cache; a ``json_object`` schema that is an
object of required integer enums, each value one token. Everything else goes to
llama.cpp unchanged. The answer differs from the grammar's only in whitespace the grammar
leaves free: this path writes ``": "`` and ``", "`` as ``json.dumps`` does.
``LocalSettings(jump_forward=False)`` turns it off (:func:`install` is then not called).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ID_PREFIX", "install", "score_fields"]

ID_PREFIX = "chatcmpl-jf-"
"""Start of the ``id`` of answers this path wrote (llama.cpp's server passes on no other
field a client could tell them by)."""

Fields = tuple[tuple[str, tuple[int, ...]], ...]


def score_fields(response_format: Any) -> Fields | None:
    """``(key, allowed values)`` in answer order when ``response_format`` asks for a flat
    object of required integer enums (the score-only verdict), else None."""
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_object":
        return None
    schema = response_format.get("schema")
    if not isinstance(schema, Mapping) or schema.get("type") != "object" \
            or schema.get("additionalProperties") is not False:
        return None
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties \
            or list(schema.get("required") or ()) != list(properties):
        return None
    fields = []
    for key, spec in properties.items():
        if not isinstance(spec, Mapping) or spec.get("type") != "integer":
            return None
        values = spec.get("enum")
        if not isinstance(values, list) or not values or len(set(values)) != len(values) \
                or not all(type(v) is int for v in values):
            return None
        fields.append((key, tuple(values)))
    return tuple(fields)


_UNSUPPORTED = ("functions", "function_call", "tools", "tool_choice", "grammar", "logit_bias",
                "logits_processor", "logprobs", "top_logprobs", "stream")


def _eligible(llama: Any, kwargs: Mapping[str, Any]) -> Fields | None:
    if any(kwargs.get(name) for name in _UNSUPPORTED) or llama.cache is not None:
        return None
    if kwargs.get("temperature", 0.2) != 0:
        return None
    return score_fields(kwargs.get("response_format"))


class _Formatted(Exception):
    def __init__(self, prompt: list[int]) -> None:
        super().__init__("formatted")
        self.prompt = prompt


class _PromptOnly:
    """The Llama as the chat handler sees it, stopping at the completion call: the prompt
    is the handler's own (template, special tokens, BOS), whatever the chat format."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, *, prompt: list[int], **_: Any) -> None:
        raise _Formatted(list(prompt))


def _prompt(llama: Any, messages: Any) -> list[int] | None:
    from llama_cpp import llama_chat_format

    handler = (llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
               or llama_chat_format.get_chat_completion_handler(llama.chat_format))
    try:
        handler(llama=_PromptOnly(llama), messages=messages)
    except _Formatted as formatted:
        return formatted.prompt
    except Exception:  # noqa: BLE001 - a handler we cannot read: llama.cpp's own path
        return None
    return None


def _penalised(logit: float, count: int, kwargs: Mapping[str, Any]) -> float:
    """llama.cpp's penalties sampler on one logit of a token seen ``count`` times."""
    if not count:
        return logit
    repeat = kwargs.get("repeat_penalty") or 1.0
    logit = logit * repeat if logit <= 0 else logit / repeat
    return logit - count * (kwargs.get("frequency_penalty") or 0.0) \
        - (kwargs.get("presence_penalty") or 0.0)


def _feed(llama: Any, tokens: Sequence[int]) -> Any:
    """Evaluate ``tokens`` after the longest prefix already in the KV cache (at least the
    last token, for fresh logits), as ``Llama.generate`` does; the last token's logits."""
    import numpy as np

    cached = llama._input_ids
    limit = min(len(cached), len(tokens) - 1)
    same = cached[:limit] == np.asarray(tokens[:limit], dtype=cached.dtype)
    keep = limit if same.all() else int(np.argmin(same))
    if keep > 0 and llama._ctx.kv_cache_seq_rm(-1, keep, -1):
        llama.n_tokens = keep
    else:
        keep = 0
        llama.reset()
    return _eval(llama, tokens[keep:])


def _decode(llama: Any, prompt: list[int], fields: Fields,
            kwargs: Mapping[str, Any]) -> tuple[str, int] | None:
    """The verdict text and its token count, or None when this path cannot answer exactly
    as llama.cpp would (a value of several tokens, too long for ``max_tokens`` or the
    context, a stop string inside the answer)."""

    def tokens(text: str) -> list[int]:
        return llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    choices: list[dict[int, int]] = []
    for _, values in fields:
        ids = {}
        for value in values:
            token = tokens(str(value))
            if len(token) != 1 or token[0] in ids:
                return None
            ids[token[0]] = value
        choices.append(ids)
    forced = [tokens(("{" if i == 0 else ", ") + json.dumps(key) + ": ")
              for i, (key, _) in enumerate(fields)] + [tokens("}")]
    total = sum(map(len, forced)) + len(fields)
    max_tokens = kwargs.get("max_tokens")
    if (max_tokens is not None and 0 < max_tokens < total) \
            or len(prompt) + total > llama.n_ctx():
        return None
    last_n = llama.last_n_tokens_size
    logits = _feed(llama, prompt + forced[0])
    generated = list(forced[0])
    chosen: dict[str, int] = {}
    for i, ((key, _), ids) in enumerate(zip(fields, choices, strict=True)):
        if i:
            logits = _eval(llama, [generated[-1], *forced[i]])
            generated += forced[i]
        seen = Counter(generated[-last_n:] if last_n > 0 else generated if last_n < 0 else ())
        best = max(sorted(ids), key=lambda t: _penalised(float(logits[t]), seen[t], kwargs))
        chosen[key] = ids[best]
        generated.append(best)
    text = json.dumps(chosen)
    stop = kwargs.get("stop") or ()
    if any(s and s in text for s in ((stop,) if isinstance(stop, str) else stop)):
        return None
    return text, len(generated) + len(forced[-1])


def _eval(llama: Any, tokens: Sequence[int]) -> Any:
    """Evaluate ``tokens`` after the cache; the last one's logits (a view, valid until the
    next evaluation)."""
    import numpy as np

    llama.eval(tokens)
    return np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),))


def install() -> None:
    """Route eligible chat completions of every ``Llama`` in this process through
    :func:`_decode`; the rest (and anything it declines) to llama.cpp unchanged."""
    from llama_cpp import Llama

    original = Llama.create_chat_completion
    if getattr(original, "_jump_forward", False):
        return

    def create_chat_completion(self: Any, messages: Any, **kwargs: Any) -> Any:
        fields = _eligible(self, kwargs)
        prompt = _prompt(self, messages) if fields else None
        answer = _decode(self, prompt, fields, kwargs) if prompt and fields else None
        if answer is None:
            return original(self, messages, **kwargs)
        text, completion_tokens = answer
        model = kwargs.get("model")
        return {
            "id": f"{ID_PREFIX}{uuid.uuid4()}", "object": "chat.completion",
            "created": int(time.time()),
            "model": model if model is not None else self.model_path,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": completion_tokens,
                      "total_tokens": len(prompt) + completion_tokens},
        }

    create_chat_completion._jump_forward = True  # type: ignore[attr-defined]
    Llama.create_chat_completion = create_chat_completion  # type: ignore[method-assign]
