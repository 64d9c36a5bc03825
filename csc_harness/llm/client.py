"""The one provider client: cache, retries, pacing and cost around ``litellm.acompletion``.

Judges and the generated-context rollout both call :meth:`Client.complete`; nothing else in
the project talks to a model. Per route (model + api base) the client keeps a concurrency
semaphore, a requests-per-minute pacer and what it learned about the server (which
``response_format`` form it accepts, whether it takes logprobs) for the rest of the run.

A client belongs to one asyncio event loop; its sync helpers (:meth:`cached`,
:meth:`prefetch`, :meth:`price`, :meth:`count_tokens`) may be called outside the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from typing import Any, TypeVar, get_args

from ..errors import CacheMiss, ProviderError, UserError
from . import _litellm
from ._retry import (
    backoff_delay,
    is_provider_failure,
    is_retryable,
    mentions_logprobs,
    mentions_response_format,
    redact,
    status_of,
)
from ._routes import Pacer, Route, next_form
from ._types import CacheMode, Request, Response, StructuredMode, Usage
from .cache import ResponseCache, cache_key, default_cache_path, keyed_body

__all__ = ["Client", "ProviderCallError"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_NO_KEY_PLACEHOLDER = "EMPTY"  # what vLLM / llama.cpp docs use; they ignore it


class ProviderCallError(ProviderError):
    """A provider call that failed for good; the message never contains a key."""

    def __init__(self, message: str, *, model: str, api_base: str | None,
                 status: int | None, attempts: int, retryable: bool) -> None:
        super().__init__(message)
        self.model, self.api_base, self.status = model, api_base, status
        self.attempts, self.retryable = attempts, retryable


class _OwnerGone(Exception):
    """The task making a shared call was cancelled: waiters make their own call."""


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    """A hard deadline over litellm's own timeout, in case a transport ignores it."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10


class Client:
    """Asks models for chat completions, at most once per distinct request.

    ``cache_path`` defaults to :func:`default_cache_path`; ``concurrency`` and ``rpm`` apply
    per model and api base; ``max_tries`` counts the first try; ``structured`` chooses how a
    request's response schema is sent (``auto`` downgrades on rejection and remembers).
    """

    def __init__(
        self, *, cache_path: str | os.PathLike[str] | None = None, cache_mode: CacheMode = "rw",
        concurrency: int = 8, rpm: float | None = None, timeout: float = 120.0,
        max_tries: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0,
        api_key: str | None = None, structured: StructuredMode = "auto",
    ) -> None:
        _check_choice("cache_mode", cache_mode, get_args(CacheMode))
        _check_choice("structured", structured, get_args(StructuredMode))
        if concurrency < 1 or max_tries < 1 or timeout <= 0 or (rpm is not None and rpm <= 0):
            raise UserError(
                f"need concurrency >= 1, max_tries >= 1, timeout > 0 and rpm > 0; got "
                f"concurrency={concurrency!r}, max_tries={max_tries!r}, timeout={timeout!r}, "
                f"rpm={rpm!r}"
            )
        self.cache_mode: CacheMode = cache_mode
        self.concurrency, self.rpm, self.timeout = concurrency, rpm, timeout
        self.max_tries, self.backoff_base, self.backoff_max = max_tries, backoff_base, backoff_max
        self.structured: StructuredMode = structured
        self.stats = Usage()
        self._api_key = api_key
        self.cache: ResponseCache | None = None
        if cache_mode != "off":
            self.cache = ResponseCache(cache_path if cache_path else default_cache_path())
        self._routes: dict[tuple[str, str | None], Route] = {}
        self._inflight: dict[str, asyncio.Future[Response]] = {}
        self._memo: dict[str, Response] = {}
        self._absent: set[str] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never shows the key
        path = self.cache.path if self.cache else None
        return f"Client(cache_mode={self.cache_mode!r}, cache_path={str(path)!r})"

    # -- cache side ------------------------------------------------------------------
    def cache_key(self, request: Request) -> str:
        """The request's content hash (see :mod:`csc_harness.llm.cache`)."""
        return cache_key(request)

    def cached(self, request: Request | str) -> Response | None:
        """The cached answer for a request (or key) without calling anything; None if absent."""
        key = request if isinstance(request, str) else cache_key(request)
        hit = self._memo.get(key)
        if hit is None and self.cache is not None:
            hit = self.cache.get(key)
        return hit

    def prefetch(self, requests: Iterable[Request | str]) -> dict[str, Response]:
        """Load many cached answers in bulk and keep them in memory for :meth:`complete`.

        Returns ``{key: Response}`` for the requests (or keys) found. A fully cached run
        calls this once up front so each ``complete`` is a dictionary lookup.
        """
        keys = [item if isinstance(item, str) else cache_key(item) for item in requests]
        if self.cache is not None:
            missing = [key for key in keys if key not in self._memo]
            found = self.cache.get_many(missing)
            self._memo.update(found)
            # known misses skip the per-call SQLite read (it costs a GIL round trip)
            self._absent.update(key for key in missing if key not in found)
        return {key: self._memo[key] for key in keys if key in self._memo}

    def _lookup(self, key: str) -> Response | None:
        hit = self._memo.pop(key, None)
        if hit is None and self.cache is not None and key not in self._absent:
            hit = self.cache.get(key)
        return hit

    # -- the call --------------------------------------------------------------------
    async def complete(self, request: Request) -> Response:
        """The answer to ``request``: from the cache, or from the provider (then cached).

        Raises :class:`CacheMiss` in replay mode when the answer is not cached, and
        :class:`ProviderError` (:class:`ProviderCallError`) when the provider fails for good.
        Refusals and empty answers are returned, not raised, and never cached.
        """
        if self._closed:
            raise RuntimeError("this Client was closed (aclose); create a new one")
        key, body = keyed_body(request)
        hit = self._lookup(key)
        if hit is not None:
            self.stats.cache_hits += 1
            return hit
        if self.cache_mode == "replay":
            raise CacheMiss(
                f"no cached answer from {request.model!r} for request {key[:12]}: replay mode "
                f"forbids provider calls (re-run with cache mode 'rw' to fill the cache)"
            )
        shared = self._inflight.get(key)
        if shared is not None:
            try:
                response = await asyncio.shield(shared)
            except _OwnerGone:
                pass
            else:
                self.stats.cache_hits += 1
                return replace(response, cached=True, latency_s=0.0, attempts=0)
        return await self._complete_once(request, key, body)

    async def _complete_once(self, request: Request, key: str, body: str) -> Response:
        """Call the provider while identical concurrent requests wait for this answer."""
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._fetch(request, key)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else _OwnerGone()
            future.set_exception(failure)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
        future.set_result(response)
        self._absent.discard(key)
        self._account(response)
        if self.cache is not None and response.refusal is None and response.text.strip():
            try:  # returns once committed, without blocking the loop on SQLite
                await asyncio.wrap_future(self.cache.submit(key, request, response, body))
            except sqlite3.Error as exc:  # a paid answer is still worth returning
                log.warning("could not cache an answer from %r: %s", request.model, exc)
        return response

    def _account(self, response: Response) -> None:
        stats = self.stats
        stats.calls += 1
        stats.prompt_tokens += response.prompt_tokens or 0
        stats.completion_tokens += response.completion_tokens or 0
        if response.cost_usd is None:
            stats.unknown_cost_calls += 1
        else:
            stats.cost_usd += response.cost_usd

    async def _fetch(self, request: Request, key: str) -> Response:
        """Try until an answer, a non-retryable failure, or ``max_tries`` tries."""
        route = self._route(request)
        attempt = 0
        while True:
            attempt += 1
            form = route.form if request.response_schema is not None else None
            kwargs = _litellm.completion_kwargs(
                request, api_key=route.api_key, timeout=self.timeout, form=form,
                logprobs=route.logprobs,
            )
            try:
                raw, latency = await self._send(route, kwargs)
            except Exception as exc:
                if not is_provider_failure(exc):
                    raise
                if self._adapt(route, request, form, kwargs, exc):
                    attempt -= 1  # a different request, not a retry of this one
                    continue
                if attempt >= self.max_tries or not is_retryable(exc):
                    self.stats.errors += 1
                    raise self._failure(route, exc, attempt) from None
                delay = backoff_delay(exc, attempt, self.backoff_base, self.backoff_max)
                self.stats.retries += 1
                self.stats.backoff_s += delay
                log.info("%r at %s: %s (try %d/%d), retrying in %.2fs", route.model,
                         route.api_base or "default endpoint", _describe(exc, route),
                         attempt, self.max_tries, delay)
                await asyncio.sleep(delay)
                continue
            fields = _litellm.parse_answer(raw)
            return Response(**fields, cost_usd=_litellm.answer_cost(raw), latency_s=latency,
                            cached=False, key=key, structured=form, attempts=attempt)

    async def _send(self, route: Route, kwargs: dict[str, Any]) -> tuple[Any, float]:
        async with route.slots:
            if route.pacer is not None:
                await route.pacer.wait()
            self.stats.attempts += 1
            start = time.perf_counter()
            raw = await _within(self.timeout * 1.5 + 5.0, _litellm.acompletion(kwargs))
            return raw, time.perf_counter() - start

    def _route(self, request: Request) -> Route:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        route_key = (request.model, request.api_base)
        route = self._routes.get(route_key)
        if route is None:
            provider = _litellm.provider_of(request.model)
            form = "json_schema" if self.structured == "auto" else self.structured
            if form == "json_object" and provider == "anthropic":
                form = "none"  # litellm drops json_object for Anthropic anyway
            route = Route(
                model=request.model, api_base=request.api_base,
                api_key=self._key_for(provider, request.api_base),
                slots=asyncio.Semaphore(self.concurrency),
                pacer=Pacer(self.rpm) if self.rpm else None, form=form,
            )
            self._routes[route_key] = route
        return route

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fresh semaphores and pacers for a new event loop (asyncio primitives bind to one);
        what was learned about each server (response_format form, logprobs) is kept."""
        self._loop = loop
        for route in self._routes.values():
            route.slots = asyncio.Semaphore(self.concurrency)
            route.pacer = Pacer(self.rpm) if self.rpm else None

    def _key_for(self, provider: str, api_base: str | None) -> str | None:
        """The explicit key, else litellm's env lookup; a placeholder for keyless servers."""
        if self._api_key:
            return self._api_key
        if provider == "openai" and api_base and not os.environ.get("OPENAI_API_KEY"):
            return _NO_KEY_PLACEHOLDER  # the OpenAI SDK refuses to send without any key
        return None

    def _adapt(self, route: Route, request: Request, form: str | None,
               kwargs: dict[str, Any], exc: BaseException) -> bool:
        """Learn from a 400 that rejects response_format or logprobs; True = send again."""
        if form is not None and form != "none" and self.structured == "auto" \
                and mentions_response_format(exc):
            if route.form != form:
                return True  # a concurrent request already downgraded this route
            weaker = next_form(form, _litellm.provider_of(route.model))
            if weaker is not None:
                log.warning("%r at %s rejected response_format %s; using %s from now on",
                            route.model, route.api_base or "default endpoint", form, weaker)
                route.form = weaker
                return True
        if "logprobs" in kwargs and mentions_logprobs(exc):
            if route.logprobs:
                log.warning("%r at %s rejected logprobs; asking without them from now on",
                            route.model, route.api_base or "default endpoint")
            route.logprobs = False
            return True
        return False

    def _failure(self, route: Route, exc: BaseException, attempts: int) -> ProviderCallError:
        retryable = is_retryable(exc)
        why = f"failed after {attempts} tries" if retryable else "failed (not retried)"
        hint = _HINTS.get(status_of(exc) or 0, "")
        message = (f"{route.model!r} at {route.api_base or 'its default endpoint'} {why}: "
                   f"{_describe(exc, route)}{hint}")
        return ProviderCallError(message, model=route.model, api_base=route.api_base,
                                 status=status_of(exc), attempts=attempts, retryable=retryable)

    # -- helpers over litellm --------------------------------------------------------
    def price(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens from litellm's local price map; None if the model is unmapped."""
        return _litellm.price(model, prompt_tokens, completion_tokens)

    def count_tokens(self, model: str, messages: Any) -> int:
        """Prompt tokens per litellm's tokenizer for ``model``; about chars/3 if unknown."""
        return _litellm.count_tokens(model, messages)

    async def aclose(self) -> None:
        """Close the cache; the client cannot be used afterwards."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        self._memo.clear()
        self._absent.clear()
        self._closed = True

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_HINTS = {
    401: " - check the API key (argument or the provider's environment variable)",
    403: " - the key lacks access to this model",
    404: " - check the model name and api_base",
}


def _describe(exc: BaseException, route: Route) -> str:
    """One line: status, exception type, redacted and shortened provider message."""
    status = status_of(exc)
    text = " ".join(str(exc).split())
    text = redact(text, route.api_key if route.api_key != _NO_KEY_PLACEHOLDER else None)
    if len(text) > 300:
        text = text[:297] + "..."
    prefix = f"HTTP {status} " if status else ""
    return f"{prefix}{type(exc).__name__}: {text}"
