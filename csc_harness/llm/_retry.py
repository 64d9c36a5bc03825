"""Which provider failures are worth another try, how long to wait, and safe error text.

litellm's own retries are inconsistent across providers (field notes), so they are off and
this module decides: retry 429, 408/409/425, 5xx, timeouts and connection errors; never
400/401/403/404/422 or a missing key. Waits are exponential with full jitter, or what the
server asked for in Retry-After, capped.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import re
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

from ..errors import UserError

__all__ = [
    "backoff_delay",
    "check_api_base",
    "check_model",
    "is_connection_failure",
    "is_retryable",
    "mentions_logprobs",
    "mentions_response_format",
    "redact",
    "retry_after",
    "secret_values",
    "status_of",
]

_RETRY_STATUS = frozenset({408, 409, 425, 429})
_TRANSIENT_NAMES = frozenset({
    "Timeout", "APITimeoutError", "TimeoutError", "APIConnectionError", "ConnectError",
    "ConnectTimeout", "ReadTimeout", "ReadError", "RemoteProtocolError", "TransportError",
    "ClientConnectionError", "ClientConnectorError", "ServerDisconnectedError",
    "ConnectionError", "ServiceUnavailableError", "BadGatewayError", "InternalServerError",
})
# litellm reports a missing key as a 500 for openai/: retrying cannot fix it
_NO_KEY = re.compile(r"missing credentials|no key is set|api_key client option must be set",
                     re.IGNORECASE)
_RESPONSE_FORMAT = re.compile(r"response.?format|json.?schema|json.?object|guided.?json|grammar",
                              re.IGNORECASE)
_LOGPROBS = re.compile(r"logprobs", re.IGNORECASE)
_KEY_LIKE = re.compile(
    r"(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{6,}|(?i:bearer)\s+[A-Za-z0-9._\-]{6,}"
    r"|AIza[0-9A-Za-z_\-]{20,}|gsk_[A-Za-z0-9]{10,}|hf_[A-Za-z0-9]{10,})"
)
_SECRET_ENV = re.compile(r"(API_KEY|_KEY|_TOKEN|_SECRET)$")
_CONNECT_NAMES = frozenset({
    "ConnectError", "ConnectTimeout", "APIConnectionError", "ClientConnectorError",
    "ClientConnectionError", "ConnectionRefusedError", "ConnectionResetError",
    "ServerDisconnectedError", "gaierror",
})
# httpx / aiohttp / OS wording when no HTTP answer came back at all
_CONNECT_TEXT = re.compile(
    r"connection refused|connecterror|all connection attempts failed|cannot connect to host"
    r"|name or service not known|nodename nor servname|temporary failure in name resolution"
    r"|no route to host|network is unreachable|connection reset by peer", re.IGNORECASE)
_CREDENTIAL_PARAM = re.compile(r"key|token|secret|passw|auth|sig|credential", re.IGNORECASE)
_rng = random.Random()  # unseeded on purpose: jitter only spreads timing


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def is_provider_failure(exc: BaseException) -> bool:
    """True for errors a provider call can raise (vs. bugs, which should propagate)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError)):
        return True
    return status_of(exc) is not None or bool(
        _names(exc) & (_TRANSIENT_NAMES | {"OpenAIError", "APIError", "APIStatusError"})
    )


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, server errors, timeouts and broken connections; not client errors."""
    if _NO_KEY.search(str(exc)):
        return False
    status = status_of(exc)
    if status is not None and (status in _RETRY_STATUS or status >= 500):
        return True
    if status is not None and 400 <= status < 500:
        return False
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    return bool(_names(exc) & _TRANSIENT_NAMES)


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_connection_failure(exc: BaseException) -> bool:
    """True when no HTTP answer came back: refused, unresolvable, unreachable, reset.

    litellm reports a refused connection as ``InternalServerError`` (500) for ``openai/``
    models, so the exception's causes and message decide, not its status.
    """
    for link in _chain(exc):
        if _names(link) & _CONNECT_NAMES or isinstance(link, ConnectionRefusedError):
            return True
    return bool(_CONNECT_TEXT.search(str(exc)))


def check_api_base(url: str | None) -> None:
    """Refuse an API base URL that carries credentials (``user:key@host`` or a key in the
    query string): a URL is recorded in run.json, cache entries and error messages, and a
    key must never be. Raises :class:`UserError` naming the URL without its secrets."""
    if not url:
        return
    try:
        parts = urllib.parse.urlsplit(url)
        userinfo = parts.username is not None or parts.password is not None
    except ValueError as exc:
        raise UserError(f"api base is not a valid URL ({exc})") from None
    params = [name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
              if _CREDENTIAL_PARAM.search(name)]
    if not userinfo and not params:
        return
    host = parts.hostname or "?"
    shown = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"
    where = "user:key@ in the URL" if userinfo else f"query parameter(s) {', '.join(params)}"
    raise UserError(f"api base {shown!r} carries credentials ({where}): remove them and put "
                    "the key in the provider's environment variable (e.g. OPENAI_API_KEY) "
                    "instead; URLs are recorded in run.json and the cache, keys never are")


_COMMON_PROVIDERS = frozenset({"openai", "anthropic", "hosted_vllm", "ollama", "ollama_chat"})


def check_model(model: str) -> None:
    """Refuse a ``provider/model`` name whose provider litellm does not know (a typo such as
    ``opneai/gpt-4o``): bad input, caught before anything is called or written. A name
    without a prefix is left to litellm (it infers the provider of known model names).
    litellm is imported only for prefixes other than the common ones."""
    prefix, slash, _ = model.partition("/")
    if not slash or prefix in _COMMON_PROVIDERS:
        return
    from . import _litellm

    known = {str(getattr(p, "value", p)) for p in _litellm.load().provider_list}
    if prefix not in known:
        raise UserError(f"unknown provider {prefix!r} in model {model!r}: use litellm's "
                        "provider/model form (e.g. openai/gpt-4o-mini, anthropic/claude-"
                        "sonnet-4-5, hosted_vllm/<name> with --api-base)")


def secret_values(*explicit: str | None) -> tuple[str, ...]:
    """Key values to redact: the explicit ones and every ``*_API_KEY`` / ``*_KEY`` /
    ``*_TOKEN`` / ``*_SECRET`` environment variable of at least 6 characters (longest
    first, so a key containing another is replaced whole)."""
    values = {s for s in explicit if s}
    values |= {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 6}
    return tuple(sorted(values, key=len, reverse=True))


def _headers(exc: BaseException) -> Any:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or date)."""
    explicit = getattr(exc, "retry_after", None)
    if isinstance(explicit, (int, float)) and explicit >= 0:
        return float(explicit)
    headers = _headers(exc)
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000.0)
        value = headers.get("retry-after")
    except Exception:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - time.time())


def backoff_delay(exc: BaseException, attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before try ``attempt + 1``.

    Retry-After wins when present (plus up to 10 % jitter so waiting callers do not
    return in lockstep); otherwise full jitter over ``base * 2**(attempt-1)``. Both capped.
    """
    asked = retry_after(exc)
    if asked is not None:
        return min(cap, asked * (1.0 + 0.1 * _rng.random()))
    return _rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


def mentions_response_format(exc: BaseException) -> bool:
    """A 400/422 (or litellm's unsupported-params error) that blames response_format.

    llama.cpp's server answers an unsupported response_format with a 500 naming it.
    """
    status = status_of(exc)
    return status in (400, 422, 500) and bool(_RESPONSE_FORMAT.search(str(exc)))


def mentions_logprobs(exc: BaseException) -> bool:
    status = status_of(exc)
    return status in (400, 422, 500) and bool(_LOGPROBS.search(str(exc)))


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with the given secrets, key-shaped tokens and env secrets replaced by ***."""
    for value in secret_values(*secrets):
        text = text.replace(value, "***")
    return _KEY_LIKE.sub("***", text)
