"""The one provider client: cache, retries, pacing and cost around ``litellm.acompletion``
(or the ``openai`` SDK itself for OpenAI-compatible servers, see :mod:`._openai_sdk`).

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
from ._openai_sdk import SdkClients, serves
from ._prompt_cache import PrefixLearner, with_breakpoints
from ._retry import (
    backoff_delay,
    check_api_base,
    is_connection_failure,
    is_provider_failure,
    is_retryable,
    mentions_logprobs,
    mentions_response_format,
    redact,
    secret_values,
    status_of,
)
from ._routes import Pacer, Route, next_form
from ._types import CacheMode, Request, Response, StructuredMode, Usage
from .budget import Budget, Reservation, UnpricedModel
from .cache import ResponseCache, cache_key, default_cache_path, keyed_body
from .models import ModelList, models_from_env

__all__ = ["DEAD_AFTER", "Client", "EndpointUnreachable", "ProviderCallError"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_NO_KEY_PLACEHOLDER = "EMPTY"  # what vLLM / llama.cpp docs use; they ignore it
DEAD_AFTER = 5
"""Consecutive connection failures (no HTTP answer at all) after which an endpoint is given
up on for the run: every call to it then fails at once instead of retrying ``max_tries``
times. Five is more than one burst of transient resets and fewer than one wave of calls at
the default concurrency of 8, so a dead server costs one wave, not hundreds of retries."""
_PROMPT_MARGIN = (1.1, 16)
"""A budget reserves ``prompt_tokens * 1.1 + 16``: tokenizers and chat overhead differ a
little between litellm's count and the provider's bill, and the cap must hold."""


class ProviderCallError(ProviderError):
    """A provider call that failed for good; the message never contains a key."""

    def __init__(self, message: str, *, model: str, api_base: str | None,
                 status: int | None, attempts: int, retryable: bool) -> None:
        super().__init__(message)
        self.model, self.api_base, self.status = model, api_base, status
        self.attempts, self.retryable = attempts, retryable


class EndpointUnreachable(ProviderCallError):
    """The endpoint gave no HTTP answer :data:`DEAD_AFTER` times in a row: the run stops."""


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
    ``budget`` caps new provider spend (see :mod:`csc_harness.llm.budget`); it may be
    replaced between runs through :attr:`budget`.
    """

    def __init__(
        self, *, cache_path: str | os.PathLike[str] | None = None, cache_mode: CacheMode = "rw",
        concurrency: int = 8, rpm: float | None = None, timeout: float = 120.0,
        max_tries: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0,
        api_key: str | None = None, structured: StructuredMode = "auto",
        budget: Budget | None = None, models: ModelList | None = None,
        batch: bool = False, batch_poll_s: float = 60.0, openai_sdk: bool = True,
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
        self._secrets = secret_values(api_key)  # read once: keys to scrub from any text
        self.budget = budget
        self.models = models if models is not None else models_from_env()
        """Model list (``--models``): names in it are served by their deployments."""
        self.batch, self.batch_poll_s = batch, batch_poll_s
        """``batch``: :meth:`prefill` sends uncached requests to provider batch APIs."""
        self._fresh: dict[str, Response] = {}  # batch answers not yet handed out
        self._bases_ok: set[str | None] = {None}
        self.cache: ResponseCache | None = None
        if cache_mode != "off":
            self.cache = ResponseCache(cache_path if cache_path else default_cache_path())
        self._routes: dict[tuple[str, str | None], Route] = {}
        self._sdk = SdkClients()
        self.openai_sdk = openai_sdk
        """Send OpenAI-compatible servers' calls through the SDK itself (:mod:`._openai_sdk`)."""
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

    def cached_many(self, keys: Iterable[str]) -> dict[str, Response]:
        """Cached answers for many keys in one query, not kept in memory: for callers that
        turn hits into results themselves instead of calling :meth:`complete`.

        The keys found missing are remembered, so :meth:`complete` then goes straight to the
        provider: a per-call SQLite read on the event-loop thread gives up the GIL and waits
        for litellm's worker threads to hand it back (~1.6 ms a call, measured).
        """
        if self.cache is None:
            return {}
        keys = list(keys)
        found = self.cache.get_many(keys)
        self._absent.update(key for key in keys if key not in found)
        if self._fresh:  # a batch answer is handed out once as fresh (its cost is this run's)
            found.update({k: self._fresh.pop(k) for k in keys if k in self._fresh})
        return found

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

    async def prefill(self, requests: Iterable[Request], state_dir: str | os.PathLike[str]
                      ) -> dict[str, int]:
        """Let the client obtain these requests' answers ahead of :meth:`complete`.

        With ``batch`` on, uncached requests go to the providers' batch APIs (see
        :mod:`csc_harness.llm.batch`; submitted batch ids are kept in
        ``state_dir/batches.json``) and the answers land in the cache, so the calls that
        follow are cache hits; without it, nothing happens. Returns counts (submitted,
        answered, failed).
        """
        if not self.batch:
            return {}
        from pathlib import Path

        from .batch import BATCHES_FILE, fill_cache

        return await fill_cache(self, list(requests), Path(state_dir) / BATCHES_FILE,
                                poll_s=self.batch_poll_s)

    def _lookup(self, key: str) -> Response | None:
        fresh = self._fresh.pop(key, None) if self._fresh else None
        if fresh is not None:
            return fresh
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
        if request.api_base not in self._bases_ok:
            check_api_base(request.api_base)  # before the URL reaches a key, a row or a log
            self._bases_ok.add(request.api_base)
        key, body = keyed_body(request)
        hit = self._lookup(key)
        if hit is not None:
            self.stats.cache_hits += hit.cached  # a batch answer handed out is not a hit
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
        reservation: Reservation | None = None
        try:
            if self.budget is not None:
                reservation = await self.budget.reserve(request.model, self.worst_cost(request))
            response = await self._fetch(request, key)
        except BaseException as exc:
            if reservation is not None:
                self.budget.release(reservation)  # type: ignore[union-attr]
            failure = exc if isinstance(exc, Exception) else _OwnerGone()
            future.set_exception(failure)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            self._forget(key, future)
            raise
        if reservation is not None:
            self.budget.settle(reservation, response.cost_usd)  # type: ignore[union-attr]
        future.set_result(response)
        self._absent.discard(key)
        self._account(response)
        try:
            if self.cache is not None and response.refusal is None and response.text.strip():
                try:  # returns once committed, without blocking the loop on SQLite
                    await asyncio.wrap_future(self.cache.submit(key, request, response, body))
                except sqlite3.Error as exc:  # a paid answer is still worth returning
                    log.warning("could not cache an answer from %r: %s", request.model, exc)
        finally:
            # only now: a twin asked before the commit shares this answer instead of
            # missing the cache and paying for it again
            self._forget(key, future)
        return response

    def _forget(self, key: str, future: asyncio.Future[Response]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]

    def worst_cost(self, request: Request) -> float:
        """USD a request can cost at most: its prompt (with a margin) plus ``max_tokens``.

        0 for a model the budget lists as free; raises :class:`UnpricedModel` when litellm's
        price map does not know the model (a budget cannot meter it).
        """
        if self.budget is not None and request.model in self.budget.free:
            return 0.0
        prompt = self.count_tokens(request.model, request.messages)
        scale, extra = _PROMPT_MARGIN
        worst = self.price(request.model, int(prompt * scale) + extra, request.max_tokens)
        if worst is None:
            raise UnpricedModel(
                f"a cost budget (--max-cost) needs prices, and litellm's price map has none "
                f"for {request.model!r} (a self-hosted model?): drop the budget or use a "
                "priced model name")
        return worst

    def _account(self, response: Response) -> None:
        stats = self.stats
        stats.calls += 1
        stats.prompt_tokens += response.prompt_tokens or 0
        stats.completion_tokens += response.completion_tokens or 0
        stats.cached_prompt_tokens += response.cached_tokens or 0
        stats.cache_write_tokens += response.cache_write_tokens or 0
        stats.batch_calls += response.batch
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
            if route.dead is not None:
                self.stats.errors += 1
                raise self._unreachable(route)
            form = route.form if request.response_schema is not None else None
            kwargs = _litellm.completion_kwargs(
                request, api_key=route.api_key, timeout=self.timeout, form=form,
                logprobs=route.logprobs,
            )
            if route.prefix is not None:  # an Anthropic route: prompt-cache breakpoints
                kwargs["messages"] = with_breakpoints(kwargs["messages"], route.prefix)
            try:
                raw, latency = await self._send(route, kwargs)
            except Exception as exc:
                if not is_provider_failure(exc):
                    raise
                if self._note_connection(route, exc):
                    self.stats.errors += 1
                    raise self._unreachable(route) from None
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
                         route.api_base or "default endpoint",
                         _describe(exc, route, self._secrets),
                         attempt, self.max_tries, delay)
                await asyncio.sleep(delay)
                continue
            route.connect_failures = 0
            fields = self._scrub_answer(_litellm.parse_answer(raw))
            return Response(**fields, cost_usd=self._cost(raw, request, fields),
                            latency_s=latency, cached=False, key=key, structured=form,
                            attempts=attempt, deployment=route.target.deployment_of(raw)
                            if route.target is not None else None)

    def _cost(self, raw: Any, request: Request, fields: dict[str, Any]) -> float | None:
        """litellm's price of the answer, else the price map's for the usage it reports."""
        cost = _litellm.answer_cost(raw)
        if cost == 0.0 and self.price(request.model, 1, 1) is None:
            cost = None  # litellm's Router reports 0 for an unmapped model: unknown, not free
        if cost is None and fields.get("prompt_tokens") is not None:
            cost = _litellm.cost_of(self.priced_model(request.model), fields["prompt_tokens"],
                                    fields.get("completion_tokens") or 0,
                                    cached=fields.get("cached_tokens") or 0,
                                    written=fields.get("cache_write_tokens") or 0)
        return cost

    def _scrub_answer(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A provider echoing a known key must not get it into a row or the cache."""
        for name in ("text", "refusal"):
            value = fields.get(name)
            if value and any(secret in value for secret in self._secrets):
                fields[name] = redact(value, *self._secrets)
        return fields

    async def _send(self, route: Route, kwargs: dict[str, Any]) -> tuple[Any, float]:
        async with route.slots:
            if route.pacer is not None:
                await route.pacer.wait()
            self.stats.attempts += 1
            _litellm.load()  # the first call imports litellm (seconds): not part of its timeout
            start = time.perf_counter()
            if route.target is not None:
                call = route.target.acompletion(kwargs)
            elif route.sdk:
                call = self._sdk.acompletion(kwargs)
            else:
                call = _litellm.acompletion(kwargs)
            raw = await _within(self.timeout * 1.5 + 5.0, call)
            return raw, time.perf_counter() - start

    def _note_connection(self, route: Route, exc: BaseException) -> bool:
        """Count consecutive connection failures of a route; True once it is dead."""
        if not is_connection_failure(exc):
            route.connect_failures = 0  # the server answered, even if with an error
            return False
        route.connect_failures += 1
        if route.dead is None and route.connect_failures >= DEAD_AFTER * route.width:
            route.dead = _describe(exc, route, self._secrets)
        return route.dead is not None

    def _unreachable(self, route: Route) -> EndpointUnreachable:
        where = route.api_base or "its default endpoint"
        return EndpointUnreachable(
            f"cannot reach {route.model!r} at {where}: {route.connect_failures} connection "
            f"attempts in a row got no answer ({route.dead}) - is the server running and the "
            "URL right?", model=route.model, api_base=route.api_base, status=None,
            attempts=route.connect_failures, retryable=False)

    def _route(self, request: Request) -> Route:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        route_key = (request.model, request.api_base)
        route = self._routes.get(route_key)
        if route is None:
            listed = self.models.get(request.model) if self.models is not None else None
            if listed is not None:
                return self._listed_route(request, route_key, listed)
            provider = _litellm.provider_of(request.model)
            form = "json_schema" if self.structured == "auto" else self.structured
            if form == "json_object" and provider == "anthropic":
                form = "none"  # litellm drops json_object for Anthropic anyway
            route = Route(
                model=request.model, api_base=request.api_base,
                api_key=self._key_for(provider, request.api_base),
                slots=asyncio.Semaphore(self.concurrency),
                pacer=Pacer(self.rpm) if self.rpm else None, form=form,
                prefix=PrefixLearner() if provider == "anthropic" else None,
                sdk=self.openai_sdk and serves(request.model, request.api_base),
            )
            self._routes[route_key] = route
        return route

    def _listed_route(self, request: Request, route_key: tuple[str, str | None],
                      listed: tuple[Any, ...]) -> Route:
        """A route for a model-list name: its deployment(s) decide model, base and key."""
        from ._router import make_target

        assert self.models is not None
        provider = _litellm.provider_of(listed[0].model)
        form = "json_schema" if self.structured == "auto" else self.structured
        if form == "json_object" and provider == "anthropic":
            form = "none"
        # litellm's Router registers unmapped deployments at price 0: ask the price map first
        # (an unknown price is remembered), so an unknown cost stays unknown, never 0
        _litellm.price(self.priced_model(request.model), 1, 1)
        target = make_target(request.model, listed, self.models.router_settings)
        self._secrets = tuple(sorted(set(self._secrets) | set(target.keys), key=len,
                                     reverse=True))
        rpm = self.rpm or (listed[0].rpm if len(listed) == 1 else None)
        route = Route(model=request.model, api_base=request.api_base, api_key=None,
                      slots=asyncio.Semaphore(self.concurrency * len(listed)),
                      pacer=Pacer(rpm) if rpm else None, form=form, target=target,
                      width=len(listed),
                      prefix=PrefixLearner() if provider == "anthropic" else None)
        self._routes[route_key] = route
        return route

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fresh semaphores and pacers for a new event loop (asyncio primitives bind to one);
        what was learned about each server (response_format form, logprobs) is kept."""
        self._loop = loop
        self._sdk.reset()
        for route in self._routes.values():
            route.slots = asyncio.Semaphore(self.concurrency * route.width)
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
            weaker = next_form(form, _litellm.provider_of(self.priced_model(route.model)))
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
                   f"{_describe(exc, route, self._secrets)}{hint}")
        return ProviderCallError(message, model=route.model, api_base=route.api_base,
                                 status=status_of(exc), attempts=attempts, retryable=retryable)

    # -- helpers over litellm --------------------------------------------------------
    def price(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens from litellm's local price map; None if the model is unmapped."""
        if self.batch:  # requests go to batch APIs first: plan at the batch price
            return _litellm.cost_of(self.priced_model(model), prompt_tokens, completion_tokens,
                                    batch=True)
        return _litellm.price(self.priced_model(model), prompt_tokens, completion_tokens)

    def priced_model(self, model: str) -> str:
        """The litellm model that prices a name (a model-list name maps to its deployment)."""
        return self.models.priced_model(model) if self.models is not None else model

    def count_tokens(self, model: str, messages: Any) -> int:
        """Prompt tokens per litellm's tokenizer for ``model``; about chars/3 if unknown."""
        return _litellm.count_tokens(self.priced_model(model), messages)

    async def aclose(self) -> None:
        """Close the cache and connections; the client cannot be used afterwards."""
        await self._sdk.aclose()
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


def _describe(exc: BaseException, route: Route, secrets: tuple[str, ...] = ()) -> str:
    """One line: status (or "connection failed"), exception type, redacted and shortened
    provider message. A refused connection is not called HTTP 500 (litellm's label)."""
    status = status_of(exc)
    text = " ".join(str(exc).split())
    text = redact(text, route.api_key if route.api_key != _NO_KEY_PLACEHOLDER else None,
                  *secrets)
    if len(text) > 300:
        text = text[:297] + "..."
    if is_connection_failure(exc):
        return f"connection failed, {type(exc).__name__}: {text}"
    prefix = f"HTTP {status} " if status else ""
    return f"{prefix}{type(exc).__name__}: {text}"
