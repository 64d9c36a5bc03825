"""Tag codes (nonces) for data quoted in prompts.

Prompts quote untrusted text (the dialogue, candidate replies, the reference, the topic, a
simulated customer's goal) between tags that carry a code: ``<reply-amber>`` ...
``</reply-amber>``. The code is one that no quoted text of the prompt contains, in any
letter case, so a quote can neither close its block early nor open a block of its own, and
the verdict parsers ignore every such block a model echoes back. It needs to be absent,
not secret, so it is derived from a stable key: the same prompt, the same cache key.

Words first: tags are in every call, three of them in the part that changes from one call
to the next. Twelve hex digits cost twelve tokens in the embedded model's vocabulary (it
splits digits); each word below is one token there (checked against SmolLM2's tokenizer,
after ``-`` and before ``>``), and few are inside everyday words (a reply holding the
conversation's word gets another one, and with it loses the shared prefix). When the
quoted text contains every word (only a text written to do so), a 12-hex code follows.
stdlib only: every layer may import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["NONCE", "NONCE_WORDS", "nonce_for"]

NONCE_WORDS = ("amber", "anchor", "arrow", "castle", "delta", "forest", "horse", "iris",
               "melon", "ocean", "opal", "orange", "orbit", "pine", "planet", "purple",
               "python", "stone", "tower", "yellow")
NONCE = "(?:" + "|".join(NONCE_WORDS) + "|[0-9a-f]{12})"
"""Regular expression of a code (no groups)."""


def nonce_for(key: str, texts: Iterable[str]) -> str:
    """The code for ``key``'s quotes: the first word from the key's starting point in
    :data:`NONCE_WORDS` that no text contains, else 12 hex digits of a salted hash."""
    blob = "\x1f".join(texts).lower()
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    start = int.from_bytes(digest[:4], "big")
    for i in range(len(NONCE_WORDS)):
        word = NONCE_WORDS[(start + i) % len(NONCE_WORDS)]
        if word not in blob:
            return word
    salt = 0
    while True:
        code = hashlib.sha256(f"{key}\x1e{salt}".encode()).hexdigest()[:12]
        if code not in blob:
            return code
        salt += 1
