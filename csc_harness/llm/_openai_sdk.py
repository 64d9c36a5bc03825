"""OpenAI-compatible servers through the official ``openai`` SDK, the way litellm reaches them.

For ``openai/<name>`` and ``hosted_vllm/<name>`` at an explicit api base (vLLM, llama.cpp,
SGLang, a proxy, a loopback stub) litellm maps none of our parameters and hands the request
to this same SDK; what it adds per call is its own machinery: a worker-thread hop, logging
objects, a second cost calculation. That was ~2.5 ms of CPU a call (field notes: 4.6 against
2.1 ms), enough to make a 2-core client, not the server, the limit of a simulation or a
judging run against a fast local server. So those calls go straight to the SDK, with the
same arguments litellm would send and the answer read by the same parser; every other
provider, OpenAI reasoning models (whose parameters litellm rewrites) and model lists keep
going through litellm. ``CSC_HARNESS_OPENAI_SDK=0`` sends everything through litellm.
"""

from __future__ import annotations

import os
from typing import Any

from . import _litellm

__all__ = ["NotACompletion", "SdkClients", "serves"]

_PROVIDERS = ("openai", "hosted_vllm")
_KEY_ENV = {"openai": "OPENAI_API_KEY", "hosted_vllm": "HOSTED_VLLM_API_KEY"}
_NO_KEY = "EMPTY"  # keyless servers ignore it; the SDK refuses to send without one


class NotACompletion(Exception):
    """The server answered 200 with a body that is not JSON (litellm calls it a 500)."""

    status_code = 502


def serves(model: str, api_base: str | None) -> bool:
    """True when ``model`` at ``api_base`` is a request litellm would pass through as is."""
    prefix, slash, name = model.partition("/")
    if not (slash and api_base and prefix in _PROVIDERS):
        return False
    if os.environ.get("CSC_HARNESS_OPENAI_SDK", "1").strip().lower() in ("0", "false", "no"):
        return False
    return prefix == "hosted_vllm" or not _litellm.rewrites_openai_params(name)


class SdkClients:
    """One ``AsyncOpenAI`` per (api base, key, timeout) on the current event loop.

    An httpx pool belongs to the loop that opened its connections, so :meth:`reset` drops
    them when the owning Client moves to a new loop.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, float], Any] = {}

    def _client(self, api_base: str, api_key: str, timeout: float) -> Any:
        key = (api_base, api_key, timeout)
        client = self._clients.get(key)
        if client is None:
            import openai

            client = self._clients[key] = openai.AsyncOpenAI(
                base_url=api_base, api_key=api_key, timeout=timeout, max_retries=0)
        return client

    async def acompletion(self, kwargs: dict[str, Any]) -> Any:
        """Send the Client's litellm-style call kwargs; returns the completion's JSON."""
        call = dict(kwargs)
        provider, _, call["model"] = call["model"].partition("/")
        api_base, timeout = call.pop("api_base"), call.pop("timeout")
        api_key = call.pop("api_key", None) or os.environ.get(_KEY_ENV[provider]) or _NO_KEY
        for litellm_only in ("num_retries", "max_retries"):
            call.pop(litellm_only, None)
        client = self._client(api_base, api_key, timeout)
        try:  # the SDK's documented way to POST any body: its per-call typed transform of
            # the messages (~2.7 ms for a long conversation) has nothing to do for plain JSON
            return await client.post("/chat/completions", body=call, cast_to=dict)
        except ValueError as exc:  # the SDK's json.loads on a non-JSON body
            raise NotACompletion(f"the server's answer is not a chat completion ({exc})") \
                from None

    def reset(self) -> None:
        self._clients.clear()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.close()
            except RuntimeError:  # its loop is gone: nothing left to close politely
                pass
