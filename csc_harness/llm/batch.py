"""Provider batch APIs as another way for the Client to obtain the same answers.

:meth:`csc_harness.llm.Client.prefill` hands this module the requests a run is about to
make; those not in the cache go to the provider's batch API (OpenAI Files + Batch through
litellm's batch helpers, Anthropic Message Batches through the official ``anthropic`` SDK,
which litellm 1.110 does not cover), and the answers land in the same cache at the batch
price. The run then proceeds as usual: every request is a cache hit, and anything a batch
did not answer (a failed or expired request, a provider without a batch API) is asked
online. Nothing above the provider layer knows how an answer was obtained.

Never paying twice: each submitted batch is written to ``OUT/batches.json`` (id,
provider, endpoint, the cache keys it covers; never a key) before any waiting, so a killed
run re-run with the same command polls the same batches instead of submitting again. A
batch whose results were collected is marked so; its requests that still have no cached
answer are asked online, not batched again. When every request is cached, nothing is
read or sent at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..jsonl import write_json_atomic
from . import _litellm
from ._prompt_cache import PrefixLearner, with_breakpoints
from ._types import Request, Response
from .cache import keyed_body

if TYPE_CHECKING:
    from .client import Client

__all__ = ["BATCHES_FILE", "fill_cache"]

log = logging.getLogger(__name__)
BATCHES_FILE = "batches.json"
_OPENAI_DONE = {"completed", "failed", "expired", "cancelled"}
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
           "refusal": "content_filter", "tool_use": "tool_calls"}


@dataclass
class _Target:
    """Where one group of requests is batched: provider, model and endpoint."""

    provider: str
    model: str
    """litellm model string of the deployment (``openai/gpt-4o-mini``)."""
    api_base: str | None
    api_key: str | None
    requests: list[tuple[str, Request]] = field(default_factory=list)


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"batches": []}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{str(path)!r} is not valid JSON: it lists submitted provider "
                        "batches; fix it or move it aside (batches in it would be "
                        "submitted again)") from None
    if not isinstance(state, dict) or not isinstance(state.get("batches"), list):
        raise UserError(f"{str(path)!r} has no 'batches' list: move it aside")
    return state


def _target_of(client: Client, request: Request) -> _Target | None:
    """The batch endpoint of a request; None for providers without a batch API here."""
    from ._router import _params

    listed = client.models.get(request.model) if client.models is not None else None
    if listed:
        params = _params(listed[0])
        model, base, key = params["model"], params.get("api_base"), params.get("api_key")
    else:
        model, base = request.model, request.api_base
        key = client._key_for(_litellm.provider_of(model), base)
    provider = _litellm.provider_of(model)
    if provider not in ("openai", "anthropic"):
        return None
    return _Target(provider, model, base, key)


def _bare(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model


def _openai_line(key: str, request: Request, form: str | None) -> dict[str, Any]:
    kwargs = _litellm.completion_kwargs(request, api_key=None, timeout=1.0, form=form,
                                        logprobs=True)
    body = {k: v for k, v in kwargs.items()
            if k not in ("timeout", "num_retries", "max_retries", "api_base", "api_key")}
    body["model"] = _bare(request.model if "/" not in body["model"] else body["model"])
    return {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _anthropic_params(request: Request, model: str, learner: PrefixLearner) -> dict[str, Any]:
    messages = with_breakpoints(list(request.messages), learner)
    system = [block for m in messages if m.get("role") == "system"
              for block in (m["content"] if isinstance(m["content"], list)
                            else [{"type": "text", "text": m["content"]}])]
    params: dict[str, Any] = {
        "model": _bare(model), "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "messages": [m for m in messages if m.get("role") != "system"]}
    if system:
        params["system"] = system
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    return params


async def _submit_openai(target: _Target, form: str | None) -> str:
    lines = [_openai_line(key, request, form) for key, request in target.requests]
    data = ("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n").encode()
    litellm = _litellm.load()
    auth = {"api_base": target.api_base, "api_key": target.api_key}
    uploaded = await litellm.acreate_file(file=("batch.jsonl", data), purpose="batch",
                                          custom_llm_provider="openai", **auth)
    batch = await litellm.acreate_batch(completion_window="24h",
                                        endpoint="/v1/chat/completions",
                                        input_file_id=uploaded.id,
                                        custom_llm_provider="openai", **auth)
    return str(batch.id)


def _anthropic_client(target: _Target) -> Any:
    try:
        import anthropic
    except ImportError:
        raise UserError("--batch for Anthropic models needs the anthropic SDK: pip install "
                        "'anthropic>=0.40,<1'") from None
    return anthropic.AsyncAnthropic(api_key=target.api_key, base_url=target.api_base,
                                    max_retries=2, timeout=120.0)


async def _submit_anthropic(target: _Target) -> str:
    learner = PrefixLearner()
    requests = [{"custom_id": key, "params": _anthropic_params(request, target.model, learner)}
                for key, request in target.requests]
    async with _anthropic_client(target) as sdk:
        batch = await sdk.messages.batches.create(requests=requests)
    return str(batch.id)


async def _poll(entry: dict[str, Any], target: _Target) -> str | None:
    """The batch's final status, or None while it is still running."""
    if target.provider == "openai":
        batch = await _litellm.load().aretrieve_batch(
            batch_id=entry["id"], custom_llm_provider="openai", api_base=target.api_base,
            api_key=target.api_key)
        entry["output_file_id"] = getattr(batch, "output_file_id", None)
        status = str(batch.status)
        return status if status in _OPENAI_DONE else None
    async with _anthropic_client(target) as sdk:
        batch = await sdk.messages.batches.retrieve(entry["id"])
    return "ended" if batch.processing_status == "ended" else None


async def _results(entry: dict[str, Any], target: _Target) -> list[tuple[str, dict | None]]:
    """(custom_id, answer fields or None for a failed request) for every result line."""
    out: list[tuple[str, dict | None]] = []
    if target.provider == "openai":
        if not entry.get("output_file_id"):
            return out
        content = await _litellm.load().afile_content(
            file_id=entry["output_file_id"], custom_llm_provider="openai",
            api_base=target.api_base, api_key=target.api_key)
        for line in content.text.splitlines():
            if line.strip():
                row = json.loads(line)
                response = row.get("response") or {}
                ok = not row.get("error") and response.get("status_code") == 200
                out.append((row["custom_id"],
                            _litellm.parse_answer(response["body"]) if ok else None))
        return out
    async with _anthropic_client(target) as sdk:
        async for row in await sdk.messages.batches.results(entry["id"]):
            result = row.result
            out.append((row.custom_id, _anthropic_fields(result.message)
                        if result.type == "succeeded" else None))
    return out


def _anthropic_fields(message: Any) -> dict[str, Any]:
    usage = message.usage
    read = getattr(usage, "cache_read_input_tokens", None) or 0
    written = getattr(usage, "cache_creation_input_tokens", None) or 0
    text = "".join(getattr(block, "text", "") for block in message.content)
    return {"text": text, "response_model": message.model,
            "finish_reason": _FINISH.get(message.stop_reason, message.stop_reason),
            "refusal": "content_filter" if message.stop_reason == "refusal" else None,
            "prompt_tokens": usage.input_tokens + read + written,
            "completion_tokens": usage.output_tokens, "top_logprobs": None,
            "cached_tokens": read, "cache_write_tokens": written}


async def _collect(client: Client, entry: dict[str, Any], target: _Target,
                   wanted: dict[str, Request], form: str | None) -> tuple[int, int]:
    """Put a finished batch's answers into the cache; returns (answered, failed)."""
    answered = failed = 0
    writes = []
    for key, fields in await _results(entry, target):
        request = wanted.get(key)
        if request is None:
            continue
        if fields is None:
            failed += 1
            continue
        fields = client._scrub_answer(fields)
        cost = _litellm.cost_of(
            client.priced_model(request.model), fields.get("prompt_tokens") or 0,
            fields.get("completion_tokens") or 0, cached=fields.get("cached_tokens") or 0,
            written=fields.get("cache_write_tokens") or 0, batch=True)
        response = Response(**fields, cost_usd=cost, latency_s=0.0, cached=False, key=key,
                            structured=form if target.provider == "openai" else (
                                None if request.response_schema is None else "none"),
                            attempts=1, deployment=None, batch=True)
        client._account(response)
        if response.refusal is None and response.text.strip():
            client._fresh[key] = response
            writes.append(asyncio.wrap_future(client.cache.submit(  # type: ignore[union-attr]
                key, request, response, keyed_body(request)[1])))
    await asyncio.gather(*writes)
    return answered + len(writes), failed


async def fill_cache(client: Client, requests: list[Request], state_path: Path, *,
                     poll_s: float) -> dict[str, int]:
    """Answer ``requests`` through provider batch APIs into the client's cache.

    Returns counts: ``submitted`` (new batch requests), ``answered``, ``failed`` (left to
    the online path). See the module docstring for resume and the state file.
    """
    if client.cache is None:
        raise UserError("--batch needs the response cache (batch answers land there): drop "
                        "--cache-mode off")
    wanted = {}
    for request in requests:
        wanted.setdefault(client.cache_key(request), request)
    cached = client.cache.get_many(wanted)
    missing = {k: r for k, r in wanted.items() if k not in cached}
    counts = {"submitted": 0, "answered": 0, "failed": 0}
    if not missing:
        return counts
    state = _load_state(state_path)
    covered = {k for entry in state["batches"] for k in entry["keys"]}
    groups: dict[tuple, _Target] = {}
    for key, request in missing.items():
        if key in covered:
            continue
        target = _target_of(client, request)
        if target is not None:
            groups.setdefault((target.provider, target.model, target.api_base), target
                              ).requests.append((key, request))
    form = "json_schema" if client.structured == "auto" else client.structured
    for (provider, model, base), target in groups.items():
        submit = _submit_openai(target, form) if provider == "openai" \
            else _submit_anthropic(target)
        batch_id = await submit
        state["batches"].append({
            "id": batch_id, "provider": provider, "model": model, "api_base": base,
            "requested_model": target.requests[0][1].model, "status": "submitted",
            "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "keys": [key for key, _ in target.requests]})
        write_json_atomic(state_path, state)  # before any waiting: a re-run resumes it
        counts["submitted"] += len(target.requests)
    await _wait(client, state, state_path, missing, form, poll_s, counts)
    return counts


async def _wait(client: Client, state: dict[str, Any], state_path: Path,
                missing: dict[str, Request], form: str | None, poll_s: float,
                counts: dict[str, int]) -> None:
    """Poll open batches that cover missing requests until each ends; collect each."""
    open_ = [e for e in state["batches"] if e["status"] != "collected"
             and any(k in missing for k in e["keys"])]
    if open_:
        log.warning("waiting for %d provider batch(es) listed in %s; interrupting is safe: "
                    "re-run the same command to resume polling", len(open_), state_path)
    while open_:
        still = []
        for entry in open_:
            probe = next(missing[k] for k in entry["keys"] if k in missing)
            target = _target_of(client, probe)
            assert target is not None
            status = await _poll(entry, target)
            if status is None:
                still.append(entry)
                continue
            answered, failed = await _collect(client, entry, target, missing, form)
            counts["answered"] += answered
            counts["failed"] += failed
            entry["status"], entry["final_status"] = "collected", status
            write_json_atomic(state_path, state)
        open_ = still
        if open_:
            await asyncio.sleep(poll_s)
