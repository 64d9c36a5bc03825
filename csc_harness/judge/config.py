"""The judge run configuration: everything that shapes a judgment, recorded in ``run.json``.

Provider plumbing (cache, concurrency, pacing, timeouts) belongs to the
:class:`csc_harness.llm.Client` the caller passes in; API keys are never part of either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from ..errors import UserError
from .rubrics import VerdictFormat

__all__ = ["JudgeConfig", "JudgeMode"]

JudgeMode = Literal["separate", "joint"]


@dataclass(frozen=True)
class JudgeConfig:
    """How to judge. Unknown keys in :meth:`from_dict` are an error listing the valid ones."""

    judges: tuple[str, ...]
    """Judge models in litellm form (``openai/gpt-4o-mini``); several make a panel."""
    dimensions: tuple[str, ...] | None = None
    """Dimension ids to judge; None = every dimension of the variant for the mode."""
    mode: JudgeMode = "separate"
    """``separate``: one call per dimension; ``joint``: one call scores all of them."""
    pairwise: bool = False
    """Compare candidate models' replies (both orders) instead of absolute scores."""
    baseline: str | None = None
    """Pairwise: the model every other model is compared with; None = the first model in
    the candidates."""
    all_pairs: bool = False
    """Pairwise: compare every pair of models instead of each model with the baseline."""
    reference_guided: bool = False
    """Show the gold strategy and reply to the judge."""
    variant: str = "default"
    """Which prompt folders to use: their ``variant`` in rubric.yaml (e.g. ``scale10``)."""
    verdict: VerdictFormat | None = None
    """Override the templates' verdict format (``rationale_first`` or ``score_only``)."""
    samples: int = 1
    """Judgments per (reply, dimension, judge); K > 1 samples at ``temperature``."""
    temperature: float | None = None
    """None: 0 for one sample, 1.0 for several (G-Eval's sampling setting)."""
    max_tokens: int | None = None
    """None: the template's ``max_tokens``, else a default by verdict format and dimensions."""
    logprobs: int | None = None
    """Ask for this many top logprobs per token to compute weighted scores (None: off)."""
    api_base: str | None = None
    """OpenAI-compatible server URL (vLLM, Ollama, llama.cpp); None = provider default."""
    prompts: str | None = None
    """Prompts folder; None = the packaged ``judge_prompts``."""
    embedded_models: tuple[str, ...] = ()
    """Model names of the bundled demo model: rows involving them are flagged ``embedded``."""
    max_cost: float | None = None
    """USD budget of the output folder (recorded spend included); None = unlimited."""

    def __post_init__(self) -> None:
        for name in ("judges", "embedded_models"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if self.dimensions is not None:
            dims = (self.dimensions,) if isinstance(self.dimensions, str) else self.dimensions
            object.__setattr__(self, "dimensions", tuple(dims) or None)
        if not self.judges or any(not isinstance(j, str) or not j.strip() for j in self.judges):
            raise UserError("give at least one judge model (--judge provider/model)")
        if len(set(self.judges)) != len(self.judges):
            raise UserError(f"judge models repeat: {', '.join(self.judges)}")
        from ..llm import check_model

        for judge in self.judges:
            check_model(judge)
        _choice("mode", self.mode, get_args(JudgeMode))
        if self.verdict is not None:
            _choice("verdict", self.verdict, get_args(VerdictFormat))
        if type(self.samples) is not int or self.samples < 1:
            raise UserError(f"samples must be a whole number >= 1, got {self.samples!r}")
        _non_negative("temperature", self.temperature)
        _non_negative("max_cost", self.max_cost)
        for name in ("max_tokens", "logprobs"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise UserError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.samples > 1 and self.temperature == 0:
            raise UserError("repeated samples at temperature 0 would repeat one answer: give "
                            "--temperature > 0 or leave it unset (1.0) with --samples > 1")
        if (self.baseline is not None or self.all_pairs) and not self.pairwise:
            raise UserError("--baseline and --all-pairs need --pairwise")
        if self.baseline is not None and self.all_pairs:
            raise UserError("--all-pairs compares every pair: drop --baseline")
        if self.pairwise and self.mode == "joint":
            raise UserError("pairwise mode judges one dimension per call: drop --mode joint")

    @property
    def sampling_temperature(self) -> float:
        if self.temperature is not None:
            return float(self.temperature)
        return 0.0 if self.samples == 1 else 1.0

    def judging_settings(self) -> dict[str, Any]:
        """What shapes an answer beyond the prompt and the identity: part of a row's
        ``input_id``, so changing any of these judges anew instead of reusing rows."""
        return {"temperature": self.sampling_temperature, "max_tokens": self.max_tokens,
                "logprobs": self.logprobs, "api_base": self.api_base,
                "verdict": self.verdict}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> JudgeConfig:
        """Build from plain data (an ablation grid cell, a parsed YAML)."""
        valid = [f.name for f in fields(cls)]
        unknown = [k for k in values if k not in valid]
        if unknown:
            raise UserError(f"unknown judge option {unknown[0]!r}; valid options: "
                            f"{', '.join(valid)}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, for run.json (holds no secrets: keys never enter the config)."""
        data = asdict(self)
        for name in ("judges", "dimensions", "embedded_models"):
            if data[name] is not None:
                data[name] = list(data[name])
        data["sampling_temperature"] = self.sampling_temperature
        return data


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name}={value!r} is not one of {', '.join(allowed)}")


def _non_negative(name: str, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value < 0):
        raise UserError(f"{name} must be a number >= 0, got {value!r}")
