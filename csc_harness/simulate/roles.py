"""The LLM roles around the candidate: planner, customer coach and customer (RoleCS's split).

Each role's prompt is a file (``csc_harness/templates/simulate_<role>.j2``) rendered in the
sandbox; each answer is asked for as structured JSON through the one provider client, which
negotiates the form (json_schema, then json_object, then plain text) and caches it. An
answer that is not usable JSON of the expected shape is asked again as another sample (a
new cache key), at most :data:`TRIES` times; after that the caller gets the reason, never
an exception, because an unusable role answer is an outcome to record, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._jinja import compile_template
from ..data import Utterance
from ..quoting import nonce_for

if TYPE_CHECKING:
    from ..llm import Client, Response
    from .scenarios import Scenario

__all__ = ["TRIES", "Asked", "RoleModel", "ask_json", "render_role"]

TRIES = 3
"""Attempts per role answer: the first and two retries with another sample index."""
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class RoleModel:
    """Who plays a role: a litellm model and its server."""

    model: str
    api_base: str | None = None
    max_tokens: int = 256
    temperature: float = 0.7


@dataclass(frozen=True)
class Asked:
    """A role's answer: the parsed object (None when unusable), why, and what it cost."""

    value: dict[str, Any] | None
    reason: str
    responses: tuple[Response, ...]


@lru_cache(maxsize=8)
def _source(role: str) -> str:
    path = resources.files("csc_harness") / "templates" / f"simulate_{role}.j2"
    return path.read_text("utf-8")


def _compiled(role: str) -> Any:
    return compile_template(_source(role))


def render_role(role: str, *, dialogue: Sequence[Utterance], key: str, **context: Any
                ) -> list[dict[str, str]]:
    """The chat messages for one role call: one user message from the role's template."""
    texts = [u.text for u in dialogue] + [str(v) for v in context.values()]
    nonce = nonce_for(f"{role}\x1e{key}", texts)
    text = _compiled(role).render(dialogue=dialogue, nonce=nonce, **context).strip()
    return [{"role": "user", "content": text}]


def schema_of(fields: dict[str, str]) -> dict[str, Any]:
    """A strict JSON schema for an object of required fields (``string`` / ``boolean``;
    ``string?`` is a string that may be empty)."""
    return {"type": "object",
            "properties": {k: {"type": t.rstrip("?")} for k, t in fields.items()},
            "required": list(fields), "additionalProperties": False}


def parse_object(text: str) -> dict[str, Any] | None:
    """The JSON object in an answer: the whole text, a fenced block, or the last ``{...}``.
    Raw line breaks inside strings are accepted (small models write them)."""
    text = (text or "").strip()
    candidates = [text, *(m.strip() for m in _FENCE.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate, strict=False)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def check_fields(value: dict[str, Any], fields: dict[str, str]) -> str | None:
    """Why an object does not fit the fields (None when it does); strings must be non-empty
    except ``string?`` ones."""
    for name, kind in fields.items():
        got = value.get(name)
        if kind == "boolean":
            if not isinstance(got, bool):
                return f"{name!r} is not true/false"
        elif not isinstance(got, str):
            return f"{name!r} is missing or not a string"
        elif kind == "string" and not got.strip():
            return f"{name!r} is missing or empty"
    return None


async def ask_json(client: Client, role: RoleModel, messages: Sequence[dict[str, str]],
                   fields: dict[str, str], *, sample: int, seed: int,
                   check: Callable[[dict[str, Any]], str | None] | None = None) -> Asked:
    """Ask ``role`` for a JSON object with ``fields``, retrying unusable answers.

    Attempt ``a`` is cache sample ``sample * TRIES + a``, so a retry is a new request while
    a re-run replays exactly the same requests from the cache. Provider failures after the
    client's own retries propagate (:class:`~csc_harness.errors.ProviderError`).
    """
    from ..llm import Request

    responses: list[Response] = []
    reason = "no answer"
    for attempt in range(TRIES):
        request = Request(model=role.model, messages=tuple(messages), api_base=role.api_base,
                          temperature=role.temperature, max_tokens=role.max_tokens,
                          response_schema=schema_of(fields), seed=seed + attempt,
                          sample=sample * TRIES + attempt)
        response = await client.complete(request)
        responses.append(response)
        value = parse_object(response.text)
        if value is None:
            reason = ("refused: " + response.refusal[:120] if response.refusal
                      else f"not a JSON object: {response.text[:80]!r}")
            continue
        reason = check_fields(value, fields) or (check(value) if check else None) or ""
        if not reason:
            return Asked(value, "", tuple(responses))
    return Asked(None, f"{role.model} gave no usable answer in {TRIES} tries ({reason})",
                 tuple(responses))


def seed_of(*parts: object) -> int:
    """A stable 31-bit seed from key parts (random choices are seeded from stable keys)."""
    text = "\x1e".join(map(str, parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:7], 16)


def scenario_context(scenario: Scenario) -> dict[str, Any]:
    """What the customer roles may see of a scenario: never a recorded dialogue."""
    return {"scenario": scenario.customer_view()}
