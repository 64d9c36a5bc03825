"""Provider layer: the only package that talks to models (through litellm, imported lazily).

``Client.complete(Request) -> Response`` adds a content-addressed SQLite cache, retries with
backoff, per-model concurrency and pacing, structured-output negotiation and cost to
``litellm.acompletion``. :class:`StubServer` is a loopback OpenAI-compatible fake for tests
and demos.
"""

from ._retry import check_api_base, check_model
from ._types import CacheMode, Request, Response, StructuredMode, Usage
from .budget import Budget, BudgetExhausted, UnpricedModel
from .cache import CACHE_FORMAT_VERSION, ResponseCache, cache_key, default_cache_path
from .client import DEAD_AFTER, Client, EndpointUnreachable, ProviderCallError
from .stub import StubReply, StubServer

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DEAD_AFTER",
    "Budget",
    "BudgetExhausted",
    "CacheMode",
    "Client",
    "EndpointUnreachable",
    "ProviderCallError",
    "Request",
    "Response",
    "ResponseCache",
    "StructuredMode",
    "StubReply",
    "StubServer",
    "UnpricedModel",
    "Usage",
    "cache_key",
    "check_api_base",
    "check_model",
    "default_cache_path",
]
