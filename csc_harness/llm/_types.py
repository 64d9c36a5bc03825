"""The provider layer's value types: what is asked (:class:`Request`) and what came back.

Both are plain frozen dataclasses so judging code can keep them in rows and the cache can
rebuild them from JSON without importing litellm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CacheMode", "Request", "Response", "StructuredMode", "Usage"]

CacheMode = Literal["rw", "replay", "off"]
"""``rw``: read and write; ``replay``: read only, a miss raises CacheMiss; ``off``: no cache."""

StructuredMode = Literal["auto", "json_schema", "json_object", "none"]
"""How a response schema is sent: ``auto`` tries json_schema, then json_object, then none."""


@dataclass(frozen=True)
class Request:
    """One chat completion to ask for; every field except ``api_base`` shapes the answer.

    ``messages`` and ``stop`` are normalised to tuples so a request can be passed around
    freely; the dicts inside are not copied and must not be mutated after construction.
    """

    model: str
    """litellm form: ``openai/gpt-4o-mini``, ``anthropic/claude-...``, ``openai/my-local``."""
    messages: tuple[dict, ...]
    """OpenAI chat messages ``{"role", "content"}``."""
    api_base: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    response_schema: dict | None = None
    """JSON schema the answer must follow; the client picks the ``response_format`` form."""
    top_logprobs: int | None = None
    """Ask for log-probabilities with this many alternatives per generated token."""
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    sample: int = 0
    """Repeated-sample index: part of the cache key, so sample k is asked for once."""

    def __post_init__(self) -> None:
        if not isinstance(self.messages, tuple):
            object.__setattr__(self, "messages", tuple(self.messages))
        if self.stop is not None and not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))


@dataclass(frozen=True)
class Response:
    """One answer, fresh or from the cache, with the provenance a judgment row records."""

    text: str
    response_model: str | None
    """Model id the provider says answered (never substituted)."""
    finish_reason: str | None
    refusal: str | None
    """Provider-level refusal: ``message.refusal``, or ``content_filter`` as finish reason."""
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    """Price of the original call; None when the model has no known price (never 0)."""
    latency_s: float
    """Wall time of the successful attempt; 0 for a cache hit."""
    cached: bool
    top_logprobs: list[list[tuple[str, float]]] | None
    """Per generated token, ``[(token, logprob), ...]``; None when the provider sent none."""
    key: str
    """Cache key of the request (see :func:`csc_harness.llm.cache.cache_key`)."""
    structured: str | None = None
    """response_format form actually sent: json_schema, json_object, none; None if no schema."""
    attempts: int = 1
    """Provider requests made for this answer (1 + retries); 0 for a cache hit."""
    deployment: str | None = None
    """Model-list deployment that answered (``model_info.id``); None outside a model list."""
    cached_tokens: int | None = None
    """Prompt tokens the provider read from its prompt cache (part of ``prompt_tokens``)."""
    cache_write_tokens: int | None = None
    """Prompt tokens written to the provider's prompt cache (Anthropic; part of
    ``prompt_tokens``)."""
    batch: bool = False
    """Answered through a provider batch API (priced at the batch rate)."""


@dataclass
class Usage:
    """Per-client counters; ``cost_usd`` counts new spend only (cache hits cost nothing)."""

    calls: int = 0
    """Answers received from a provider (not from the cache)."""
    attempts: int = 0
    """HTTP requests sent, including retried and failed ones."""
    cache_hits: int = 0
    retries: int = 0
    backoff_s: float = 0.0
    """Seconds spent waiting before retries (Retry-After or backoff)."""
    errors: int = 0
    """Requests that ended in ProviderError after retries."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unknown_cost_calls: int = 0
    """Fresh answers whose price is unknown: ``cost_usd`` is then a lower bound."""
    cached_prompt_tokens: int = 0
    """Prompt tokens of fresh answers read from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """Prompt tokens of fresh answers written to the provider's prompt cache."""
    batch_calls: int = 0
    """Fresh answers obtained through a provider batch API (also counted in ``calls``)."""

    def as_dict(self) -> dict[str, int | float]:
        """Counters plus ``provider_cache_share``: the share of fresh prompt tokens read
        from provider prompt caches (None before any prompt token was billed)."""
        data: dict[str, int | float] = dict(self.__dict__)
        share = self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else None
        data["provider_cache_share"] = round(share, 4) if share is not None else None  # type: ignore[assignment]
        return data

