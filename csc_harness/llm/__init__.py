"""Provider layer: the only package that talks to models (through litellm, imported lazily).

``Client.complete(Request) -> Response`` adds a content-addressed SQLite cache, retries with
backoff, per-model concurrency and pacing, structured-output negotiation and cost to
``litellm.acompletion``. :class:`StubServer` is a loopback OpenAI-compatible fake for tests
and demos.
"""

from ._types import CacheMode, Request, Response, StructuredMode, Usage
from .cache import CACHE_FORMAT_VERSION, ResponseCache, cache_key, default_cache_path
from .client import Client, ProviderCallError
from .stub import StubReply, StubServer

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CacheMode",
    "Client",
    "ProviderCallError",
    "Request",
    "Response",
    "ResponseCache",
    "StructuredMode",
    "StubReply",
    "StubServer",
    "Usage",
    "cache_key",
    "default_cache_path",
]
