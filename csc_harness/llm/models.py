"""``--models FILE``: a model list in litellm's proxy ``model_list`` shape.

Why litellm's own format: users who outgrow one endpoint already write it for litellm's
proxy, and litellm's Router takes the same entries. A file looks like::

    model_list:
      - model_name: judge                 # the name --judge / --model use
        litellm_params:
          model: openai/gpt-4o-mini
          api_key: os.environ/OPENAI_API_KEY
      - model_name: judge                 # a second deployment of the same model
        litellm_params: {model: azure/gpt-4o-mini, api_base: https://..., rpm: 600}
    router_settings: {routing_strategy: simple-shuffle, cooldown_time: 30}

Rules: several entries with one ``model_name`` are deployments of one model (served by
litellm's Router, see :mod:`csc_harness.llm._router`); the cache key names the
``model_name``, so replicas share answers. Keys stay in the environment: ``api_key`` must be
``os.environ/NAME`` (read when the first call is made); a literal key is refused. Every
error is one line naming the file, the entry and the field.

The file is exported as ``$CSC_HARNESS_MODELS`` by the CLI (:func:`apply_models`), and
every :class:`~csc_harness.llm.Client` made without an explicit list reads it, so the
commands' steps (judging, rollouts, ablation cells) all see the same list.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ._retry import check_api_base

__all__ = ["MODELS_VAR", "Deployment", "ListedEndpoint", "ModelList", "apply_models",
           "listed_endpoint", "listed_key", "load_models", "models_from_env"]

MODELS_VAR = "CSC_HARNESS_MODELS"
ENV_PREFIX = "os.environ/"
_ENTRY_KEYS = ("model_name", "litellm_params", "model_info")
_PARAM_KEYS = ("model", "api_base", "api_key", "api_version", "rpm", "tpm", "weight",
               "order", "organization", "timeout", "max_parallel_requests", "region_name",
               "vertex_project", "vertex_location", "aws_region_name")
_NUMBER_PARAMS = ("rpm", "tpm", "weight", "order", "timeout", "max_parallel_requests")
_INFO_KEYS = ("id", "base_model")
_ROUTER_KEYS = ("routing_strategy", "routing_strategy_args", "allowed_fails",
                "cooldown_time", "retry_after", "enable_pre_call_checks", "fallbacks",
                "context_window_fallbacks", "timeout")
_TOP_KEYS = ("model_list", "router_settings", "litellm_settings", "general_settings")


@dataclass(frozen=True)
class Deployment:
    """One ``model_list`` entry: a place where the model named ``name`` is served."""

    name: str
    """``model_name``: what ``--model`` / ``--judge`` say, and what the cache key names."""
    model: str
    """litellm model string of this deployment (``openai/gpt-4o-mini``)."""
    id: str
    """``model_info.id``, else ``<model_name>#<n>`` (n counts from 1 per name): what rows
    record as ``deployment``."""
    api_base: str | None = None
    api_key_env: str | None = None
    """Environment variable holding the key (from ``api_key: os.environ/NAME``)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Other litellm params (rpm, tpm, api_version, ...), passed through."""
    base_model: str | None = None
    """``model_info.base_model``: the priced model name when ``model`` is not in the map."""

    def api_key(self) -> str | None:
        """The key, read from the environment now; a one-line error when it is unset."""
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise UserError(f"model {self.name!r} (deployment {self.id!r}) takes its key from "
                            f"${self.api_key_env}, which is not set: export it")
        return value

    @property
    def rpm(self) -> float | None:
        value = self.params.get("rpm")
        return float(value) if value else None

    def public(self) -> dict[str, Any]:
        """What run.json may record: no key, only the variable that holds it."""
        return {"model_name": self.name, "id": self.id, "model": self.model,
                "api_base": self.api_base, "api_key": (f"{ENV_PREFIX}{self.api_key_env}"
                                                       if self.api_key_env else None),
                **{k: v for k, v in self.params.items()}}


@dataclass(frozen=True)
class ModelList:
    """The parsed file: deployments by ``model_name`` plus the Router settings."""

    path: str
    deployments: Mapping[str, tuple[Deployment, ...]]
    router_settings: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> tuple[Deployment, ...] | None:
        return self.deployments.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.deployments

    def priced_model(self, name: str) -> str:
        """The litellm model whose price and tokenizer stand for ``name`` (its first
        deployment's ``base_model`` or ``model``); ``name`` itself when not listed."""
        found = self.deployments.get(name)
        if not found:
            return name
        return found[0].base_model or found[0].model

    def public(self) -> dict[str, Any]:
        """JSON-safe description for run.json; never holds a key."""
        return {"path": self.path, "router_settings": dict(self.router_settings),
                "model_list": [d.public() for ds in self.deployments.values() for d in ds]}


def _fail(path: str, where: str, message: str) -> UserError:
    return UserError(f"{path}: {where}: {message}")


def _unknown(path: str, where: str, values: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    extra = [k for k in values if k not in valid]
    if extra:
        raise _fail(path, where, f"unknown key {extra[0]!r}; valid keys: {', '.join(valid)}")


def _key_env(path: str, where: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(ENV_PREFIX) \
            or not value[len(ENV_PREFIX):].strip():
        # never echo the value: it may be a real key
        raise _fail(path, f"{where}.api_key", "a key written in the file is refused; put it "
                    "in an environment variable and write api_key: os.environ/NAME")
    return value[len(ENV_PREFIX):].strip()


def _deployment(path: str, index: int, entry: Any, counts: dict[str, int]) -> Deployment:
    where = f"model_list[{index}]"
    if not isinstance(entry, Mapping):
        raise _fail(path, where, "must be a mapping with model_name and litellm_params")
    _unknown(path, where, entry, _ENTRY_KEYS)
    name = entry.get("model_name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(path, f"{where}.model_name", "missing (the name --model/--judge use)")
    where = f"model_list[{index}] ({name!r})"
    params = entry.get("litellm_params")
    if not isinstance(params, Mapping) or not isinstance(params.get("model"), str) \
            or not params["model"].strip():
        raise _fail(path, f"{where}.litellm_params", "needs model: <provider>/<model>")
    _unknown(path, f"{where}.litellm_params", params, _PARAM_KEYS)
    for key in _NUMBER_PARAMS:
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value <= 0):
            raise _fail(path, f"{where}.litellm_params.{key}", f"must be a number > 0, got "
                        f"{value!r}")
    api_base = params.get("api_base")
    if api_base is not None:
        if not isinstance(api_base, str):
            raise _fail(path, f"{where}.litellm_params.api_base", "must be a URL")
        try:
            check_api_base(api_base)
        except UserError as exc:
            raise _fail(path, f"{where}.litellm_params.api_base", str(exc)) from None
    info = entry.get("model_info") or {}
    if not isinstance(info, Mapping):
        raise _fail(path, f"{where}.model_info", "must be a mapping")
    _unknown(path, f"{where}.model_info", info, _INFO_KEYS)
    counts[name] = counts.get(name, 0) + 1
    rest = {k: v for k, v in params.items() if k not in ("model", "api_base", "api_key")}
    return Deployment(name=name, model=params["model"].strip(),
                      id=str(info.get("id") or f"{name}#{counts[name]}"),
                      api_base=api_base.rstrip("/") if api_base else None,
                      api_key_env=_key_env(path, f"{where}.litellm_params", params.get("api_key")),
                      params=rest, base_model=info.get("base_model"))


def load_models(path: str | os.PathLike[str]) -> ModelList:
    """Read and check a model list file; raises :class:`UserError` (one line) when wrong."""
    import yaml

    shown = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read the model list {shown!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{shown}:{line} not valid YAML") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("model_list"), list) \
            or not data["model_list"]:
        raise UserError(f"{shown}: needs a non-empty model_list (litellm's proxy config shape)")
    _unknown(shown, "top level", data, _TOP_KEYS)
    counts: dict[str, int] = {}
    grouped: dict[str, list[Deployment]] = {}
    seen_ids: set[str] = set()
    for index, entry in enumerate(data["model_list"]):
        deployment = _deployment(shown, index, entry, counts)
        if deployment.id in seen_ids:
            raise _fail(shown, f"model_list[{index}].model_info.id", f"{deployment.id!r} "
                        "repeats: deployment ids must be unique")
        seen_ids.add(deployment.id)
        grouped.setdefault(deployment.name, []).append(deployment)
    settings = data.get("router_settings") or {}
    if not isinstance(settings, Mapping):
        raise _fail(shown, "router_settings", "must be a mapping")
    if "num_retries" in settings:
        raise _fail(shown, "router_settings.num_retries", "csc-harness retries failed calls "
                    "itself (--max-tries, backoff, Retry-After): remove it")
    _unknown(shown, "router_settings", settings, _ROUTER_KEYS)
    return ModelList(shown, {k: tuple(v) for k, v in grouped.items()}, dict(settings))


def apply_models(path: str | None) -> ModelList | None:
    """Check ``--models FILE`` (else ``$CSC_HARNESS_MODELS``) before anything is paid for,
    and export it (absolute path) so every Client of the command reads the same list."""
    path = path or os.environ.get(MODELS_VAR) or None
    if path is None:
        return None
    models = load_models(path)
    os.environ[MODELS_VAR] = str(Path(path).expanduser().resolve())
    return models


_LOADED: dict[tuple[str, float], ModelList] = {}


def models_from_env() -> ModelList | None:
    """The list ``$CSC_HARNESS_MODELS`` names (read when called), or None."""
    path = os.environ.get(MODELS_VAR)
    if not path:
        return None
    try:
        stamp = (path, Path(path).stat().st_mtime)
    except OSError:
        raise UserError(f"${MODELS_VAR} names {path!r}, which cannot be read") from None
    if stamp not in _LOADED:
        _LOADED[stamp] = load_models(path)
    return _LOADED[stamp]


_KEY_VARS = {"anthropic": "ANTHROPIC_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}
"""Where lm-eval's API backends read their key (``OPENAI_API_KEY`` for the others)."""


@dataclass(frozen=True)
class ListedEndpoint:
    """The one endpoint a tool that cannot use litellm's Router (lm-eval) calls for a
    listed name: the first deployment."""

    model: str
    api_base: str | None
    key_env: Mapping[str, str]
    """``{VARIABLE: key}`` to set while the tool runs (its own key variable); never
    written anywhere."""
    note: str | None
    """Why the other deployments are not used, when there are others."""


def listed_endpoint(name: str) -> ListedEndpoint | None:
    """The endpoint for ``name`` in ``$CSC_HARNESS_MODELS``' list, or None if not listed.

    Several deployments: only the first is used (``note`` says so): lm-eval sends its
    requests itself, so the Router's spreading and failover cannot reach them.
    """
    models = models_from_env()
    found = models.get(name) if models is not None else None
    if not found:
        return None
    first = found[0]
    key = first.api_key()
    provider = first.model.split("/", 1)[0] if "/" in first.model else ""
    note = None
    if len(found) > 1:
        note = (f"{name!r} has {len(found)} deployments in the model list; lm-eval (reference "
                f"context) calls only the first, {first.id!r} at "
                f"{first.api_base or 'its default endpoint'}: spreading and failover apply "
                "to judging and the generated context")
    return ListedEndpoint(first.model, first.api_base,
                          {_KEY_VARS.get(provider, "OPENAI_API_KEY"): key} if key else {}, note)


@contextlib.contextmanager
def listed_key(env: Mapping[str, str]) -> Iterator[None]:
    """Set a listed deployment's key in the environment for the duration of a tool's run,
    then put back what was there (the key is never passed as an argument, which lm-eval
    records in its results)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
