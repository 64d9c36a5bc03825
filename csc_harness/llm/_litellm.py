"""Everything that touches litellm itself: import, call arguments, answer parsing, prices.

litellm takes seconds and ~200 MB to import and fetches a price map from the network
unless told not to, so it is imported here, lazily, on the first call that needs it.
"""

from __future__ import annotations

import functools
import gc
import math
import os
from types import ModuleType
from typing import Any

from ._types import Request

__all__ = [
    "acompletion",
    "completion_kwargs",
    "cost_of",
    "count_tokens",
    "parse_answer",
    "parse_logprobs",
    "price",
    "provider_of",
]


@functools.cache
def load() -> ModuleType:
    """Import litellm with the local price map and without its stdout banners."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # litellm prints "Give Feedback / Get Help" to stdout on every exception otherwise
    litellm.suppress_debug_info = True
    # litellm leaves a few hundred MB of long-lived objects (modules, pydantic models, the
    # price map) that every full garbage collection walked again: ~180 ms a collection,
    # several per thousand calls, each stalling the event loop (profiled). Frozen objects
    # are still freed by reference counting; only cycles among them would be kept.
    gc.freeze()
    return litellm


async def acompletion(kwargs: dict[str, Any]) -> Any:
    return await load().acompletion(**kwargs)


@functools.cache
def provider_of(model: str) -> str:
    """litellm's provider name for ``model`` (``openai``, ``anthropic``...); "" if unknown."""
    if "/" in model:
        prefix = model.split("/", 1)[0]
        if prefix in ("openai", "anthropic", "hosted_vllm", "ollama", "ollama_chat"):
            return prefix  # skip the import for the common cases
    try:
        return str(load().get_llm_provider(model)[1])
    except Exception:
        return ""


@functools.cache
def rewrites_openai_params(name: str) -> bool:
    """True unless litellm sends our call's parameters for this OpenAI model name as they
    are: reasoning models (o-series, GPT-5) get ``max_completion_tokens`` and lose
    ``temperature``. Anything litellm's config lookup cannot place counts as rewritten."""
    litellm = load()
    try:
        from litellm.llms.openai.chat.gpt_transformation import (
            OpenAIGPTConfig,
            OpenAIUnknownModelConfig,
        )

        config = litellm.ProviderConfigManager.get_provider_chat_config(
            model=name, provider=litellm.LlmProviders.OPENAI)
    except Exception:
        return True
    return type(config) not in (OpenAIGPTConfig, OpenAIUnknownModelConfig)


def response_format(schema: dict, form: str) -> dict | None:
    """The ``response_format`` body for a schema in one form (``none`` sends nothing)."""
    if form == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema, "strict": True}}
    if form == "json_object":
        # llama.cpp's server constrains generation with this non-standard "schema" field
        return {"type": "json_object", "schema": schema}
    return None


def completion_kwargs(
    request: Request, *, api_key: str | None, timeout: float, form: str | None,
    logprobs: bool,
) -> dict[str, Any]:
    """Arguments for ``litellm.acompletion``: litellm's own retries off, timeout explicit."""
    kwargs: dict[str, Any] = {
        "model": request.model,
        "messages": list(request.messages),
        "timeout": timeout,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "num_retries": 0,
        "max_retries": 0,
    }
    if request.api_base:
        kwargs["api_base"] = request.api_base
    if api_key:
        kwargs["api_key"] = api_key
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.seed is not None:
        kwargs["seed"] = request.seed
    if logprobs and request.top_logprobs:
        kwargs["logprobs"] = True
        kwargs["top_logprobs"] = request.top_logprobs
    if request.response_schema is not None and form:
        body = response_format(request.response_schema, form)
        if body is not None:
            kwargs["response_format"] = body
    return kwargs


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def parse_logprobs(choice: Any) -> list[list[tuple[str, float]]] | None:
    """``choices[0].logprobs.content[].top_logprobs`` as ``[[(token, logprob), ...], ...]``."""
    content = _get(_get(choice, "logprobs"), "content")
    if not content:
        return None
    tokens: list[list[tuple[str, float]]] = []
    for item in content:
        top = _get(item, "top_logprobs") or []
        alternatives = [(str(_get(alt, "token")), float(_get(alt, "logprob"))) for alt in top]
        if not alternatives and _get(item, "token") is not None:
            alternatives = [(str(_get(item, "token")), float(_get(item, "logprob")))]
        tokens.append(alternatives)
    return tokens


def parse_answer(raw: Any) -> dict[str, Any]:
    """The fields of a litellm ModelResponse a :class:`Response` records (no cost)."""
    choices = _get(raw, "choices") or []
    choice = choices[0] if choices else None
    message = _get(choice, "message")
    finish = _get(choice, "finish_reason")
    refusal = _get(message, "refusal")
    if not refusal and finish == "content_filter":
        refusal = "content_filter"
    usage = _get(raw, "usage")
    cached, written = cache_tokens(usage)
    return {
        "text": _get(message, "content") or "",
        "response_model": _get(raw, "model"),
        "finish_reason": finish,
        "refusal": refusal or None,
        "prompt_tokens": _get(usage, "prompt_tokens"),
        "completion_tokens": _get(usage, "completion_tokens"),
        "top_logprobs": parse_logprobs(choice),
        "cached_tokens": cached,
        "cache_write_tokens": written,
    }


def cache_tokens(usage: Any) -> tuple[int | None, int | None]:
    """(prompt tokens read from the provider's prompt cache, tokens written to it).

    OpenAI reports reads as ``usage.prompt_tokens_details.cached_tokens``; Anthropic (via
    litellm) as ``cache_read_input_tokens`` and writes as ``cache_creation_input_tokens``.
    None when the provider says nothing.
    """
    if usage is None:
        return None, None
    read = _get(usage, "cache_read_input_tokens")
    if not read:
        read = _get(_get(usage, "prompt_tokens_details"), "cached_tokens") or read
    written = _get(usage, "cache_creation_input_tokens")
    return (int(read) if read is not None else None,
            int(written) if written is not None else None)


def answer_cost(raw: Any) -> float | None:
    """What litellm priced the call at; None when the model has no known price."""
    hidden = getattr(raw, "_hidden_params", None) or {}
    if "response_cost" not in hidden:
        return None  # not priced by litellm (an SDK answer): the caller prices the usage
    # None there means unmapped; asking completion_cost again costs ~1 ms just to raise
    cost = hidden["response_cost"]
    try:
        value = float(cost)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for these token counts from litellm's local price map; None if unmapped."""
    if model in _UNPRICED:
        return None
    try:
        prompt_cost, completion_cost = load().cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        _UNPRICED.add(model)
        return None
    return float(prompt_cost) + float(completion_cost)


_UNPRICED: set[str] = set()


@functools.cache
def _rates(model: str) -> dict[str, float] | None:
    try:
        info = load().get_model_info(model)
    except Exception:
        return None
    names = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
             "cache_creation_input_token_cost", "input_cost_per_token_batches",
             "output_cost_per_token_batches", "cache_read_input_token_cost_batches",
             "cache_creation_input_token_cost_batches")
    rates = {name: float(info[name]) for name in names if info.get(name) is not None}
    if "input_cost_per_token" not in rates or "output_cost_per_token" not in rates:
        return None
    return rates


def cost_of(model: str, prompt_tokens: int, completion_tokens: int, *, cached: int = 0,
            written: int = 0, batch: bool = False) -> float | None:
    """USD of one answer with each kind of token at its own list price (litellm's map).

    ``prompt_tokens`` includes ``cached`` (read from the provider's prompt cache) and
    ``written`` (cache writes). Batch answers use the ``*_batches`` prices, or half the
    online price where the map has none (both providers bill batches at half price).
    None when the model is unmapped.
    """
    rates = _rates(model)
    if rates is None:
        return None
    inp, out = rates["input_cost_per_token"], rates["output_cost_per_token"]
    read = rates.get("cache_read_input_token_cost", inp)
    write = rates.get("cache_creation_input_token_cost", inp)
    if batch:
        half = inp and rates.get("input_cost_per_token_batches", inp / 2) / inp
        read = rates.get("cache_read_input_token_cost_batches", read * half)
        write = rates.get("cache_creation_input_token_cost_batches", write * half)
        inp = rates.get("input_cost_per_token_batches", inp / 2)
        out = rates.get("output_cost_per_token_batches", out / 2)
    plain = max(0, prompt_tokens - cached - written)
    return plain * inp + cached * read + written * write + completion_tokens * out


def count_tokens(model: str, messages: Any) -> int:
    """litellm's token count for ``messages`` (chat list or text); ~chars/3 if it fails."""
    try:
        if isinstance(messages, str):
            return int(load().token_counter(model=model, text=messages))
        return int(load().token_counter(model=model, messages=list(messages)))
    except Exception:
        text = messages if isinstance(messages, str) else "".join(
            str(m.get("content") or "") if isinstance(m, dict) else str(m) for m in messages
        )
        return max(1, math.ceil(len(text) / 3))
