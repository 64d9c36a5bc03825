"""Dry runs: how many calls, tokens and dollars a judge run would take, calling nothing.

Shares the runner's plan, resume and cache logic (a dry run of a half-done folder counts
only what is left), but never writes: a torn last line is left for the real run to cut.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .candidates import Candidate
from .config import JudgeConfig
from .runner import CHUNK, _chunks, _Run

if TYPE_CHECKING:
    from ..llm import Client

__all__ = ["Estimate", "estimate_judgments"]


@dataclass
class Estimate:
    """A dry run: what a run would do. Completion tokens are the ``max_tokens`` bound."""

    judgments: int
    done: int
    cached: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """Upper bound in USD; None when a judge with calls to make has no known price."""
    unpriced: list[str]

    def lines(self) -> list[str]:
        cost = (f"up to ${self.cost_usd:.4f}" if self.cost_usd is not None
                else f"unknown (no price for {', '.join(self.unpriced)})")
        return [f"judgments: {self.judgments} ({self.done} already done)",
                f"provider calls: {self.calls} ({self.cached} answered from the cache)",
                f"prompt tokens: {self.prompt_tokens:,} (estimated)",
                f"completion tokens: up to {self.completion_tokens:,} (max_tokens per call)",
                f"cost: {cost}"]


def estimate_judgments(config: JudgeConfig, candidates: Sequence[Candidate],
                       out_dir: str | Path, *, client: Client) -> Estimate:
    """Count calls, tokens and cost of a run without calling anything or writing files."""
    run = _Run(config, candidates, Path(out_dir), client, read_only=True)
    done = sum(1 for k in run.keys if run.store.done(k))
    cached = calls = prompt = completion = 0
    by_judge: Counter[tuple[str, str]] = Counter()
    for chunk in _chunks(run.plan, CHUNK):
        pending = run.pending(chunk)
        keys = [client.cache_key(job.request) for job in pending]
        hits = client.cache.get_many(keys) if keys and client.cache is not None else {}
        for job, key in zip(pending, keys):
            request = job.request
            assert request is not None
            if key in hits:
                cached += 1
                continue
            calls += 1
            tokens = client.count_tokens(request.model, request.messages)
            prompt += tokens
            completion += request.max_tokens
            by_judge[(request.model, "p")] += tokens
            by_judge[(request.model, "c")] += request.max_tokens
    cost, unpriced = 0.0, []
    for judge in config.judges:
        if by_judge[(judge, "p")] or by_judge[(judge, "c")]:
            price = client.price(judge, by_judge[(judge, "p")], by_judge[(judge, "c")])
            if price is None:
                unpriced.append(judge)
            else:
                cost += price
    return Estimate(run.plan.judgments, done, cached, calls, prompt, completion,
                    None if unpriced else cost, unpriced)
