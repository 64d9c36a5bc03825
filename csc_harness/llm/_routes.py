"""Per-route state: what the client keeps for one (model, api_base) during a run."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Pacer", "Route", "next_form"]


class Pacer:
    """Spaces request starts ``60 / rpm`` seconds apart (no bursts) on one event loop.

    Each caller reserves the next slot before sleeping, so a late wake-up never lets a
    later caller start before its own slot; starts can bunch only after the loop was late.
    """

    def __init__(self, rpm: float) -> None:
        self.interval = 60.0 / rpm
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


@dataclass
class Route:
    """What the client knows about one (model, api_base) for the rest of the run."""

    model: str
    api_base: str | None
    api_key: str | None
    slots: asyncio.Semaphore
    """At most ``concurrency`` requests in flight."""
    pacer: Pacer | None
    form: str
    """response_format form to send now: json_schema, json_object or none."""
    logprobs: bool = True
    """False once the server rejected logprobs."""
    connect_failures: int = 0
    """Consecutive attempts that got no HTTP answer (reset by any answer)."""
    dead: str | None = None
    """Why the endpoint is given up on for the rest of the run; None while it is usable."""
    target: Any = None
    """A model-list entry's :class:`~csc_harness.llm._router.Target`; None: call litellm
    with the request's own model and api base."""
    width: int = 1
    """Deployments behind the route: a dead one among several is the Router's to skip."""
    sdk: bool = False
    """Sent straight through the ``openai`` SDK (see :mod:`csc_harness.llm._openai_sdk`)."""
    prefix: Any = None
    """Anthropic routes: the :class:`~csc_harness.llm._prompt_cache.PrefixLearner` that
    places prompt-cache breakpoints; None for providers that cache by themselves."""


def next_form(form: str, provider: str) -> str | None:
    """The weaker response_format form to try after ``form`` was rejected (None: no more).

    Anthropic skips json_object: litellm drops it for Anthropic anyway.
    """
    if form == "json_schema":
        return "none" if provider == "anthropic" else "json_object"
    if form == "json_object":
        return "none"
    return None
