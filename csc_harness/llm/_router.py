"""Calling a model named in a model list: one deployment directly, several through litellm's
Router (load balancing and cooldowns are litellm's; we write none of our own).

litellm is reached only through :func:`csc_harness.llm._litellm.load` (the one module that
imports it). The Router's own retries are off: the :class:`~csc_harness.llm.Client` retries
with its backoff, and each retry goes back through the Router, which skips a deployment it
has cooled down, so a dead replica's calls land on the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _litellm
from .models import Deployment

__all__ = ["Target", "make_target"]

_NO_KEY = "EMPTY"  # keyless OpenAI-compatible servers (vLLM, llama.cpp) ignore it
_ROUTER_DEFAULTS = {
    # one failure cools a deployment down for 10 s: a refused connection is not transient
    "allowed_fails": 0, "cooldown_time": 10.0, "routing_strategy": "simple-shuffle",
}


def _params(deployment: Deployment) -> dict[str, Any]:
    """litellm_params for a call or a Router entry, the key read from the environment now."""
    params: dict[str, Any] = {"model": deployment.model, **deployment.params}
    if deployment.api_base:
        params["api_base"] = deployment.api_base
    key = deployment.api_key()
    if key is None and deployment.api_base and deployment.model.startswith("openai/"):
        key = _NO_KEY  # the OpenAI SDK refuses to send without any key
    if key is not None:
        params["api_key"] = key
    params.pop("timeout", None)  # the Client's timeout governs every call
    return params


class Target:
    """Where a listed model's calls go; :meth:`acompletion` takes the Client's kwargs."""

    def __init__(self, name: str, deployments: tuple[Deployment, ...],
                 router_settings: Mapping[str, Any]) -> None:
        self.name = name
        self.deployments = deployments
        self.width = len(deployments)
        self.keys = tuple(p["api_key"] for p in map(_params, deployments) if "api_key" in p)
        self._router: Any = None
        self._settings = {**_ROUTER_DEFAULTS, **router_settings}
        self._ids = {d.model: d.id for d in deployments}

    def _get_router(self) -> Any:
        if self._router is None:
            model_list = [{"model_name": d.name, "litellm_params": _params(d),
                           "model_info": {"id": d.id}} for d in self.deployments]
            self._router = _litellm.load().Router(
                model_list=model_list, num_retries=0, **self._settings)
        return self._router

    async def acompletion(self, kwargs: dict[str, Any]) -> Any:
        """Send the Client's call kwargs to this model's deployment(s)."""
        call = {k: v for k, v in kwargs.items() if k not in ("api_base", "api_key")}
        if self.width == 1:
            call.update(_params(self.deployments[0]))
            return await _litellm.acompletion(call)
        call["model"] = self.name
        call.pop("max_retries", None)  # the Router passes num_retries=0 itself
        return await self._get_router().acompletion(**call)

    def deployment_of(self, raw: Any) -> str:
        """Which deployment answered: the Router's ``model_id`` (our deployment id)."""
        if self.width == 1:
            return self.deployments[0].id
        hidden = getattr(raw, "_hidden_params", None) or {}
        return str(hidden.get("model_id") or "")


def make_target(name: str, deployments: tuple[Deployment, ...],
                router_settings: Mapping[str, Any]) -> Target:
    return Target(name, deployments, router_settings)
