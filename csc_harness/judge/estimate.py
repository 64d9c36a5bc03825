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
    truncated_replies: int = 0
    """Replies longer than ``MAX_REPLY_CHARS``, judged cut to that length."""

    def lines(self) -> list[str]:
        from .candidates import MAX_REPLY_CHARS

        cost = (f"up to ${self.cost_usd:.4f}" if self.cost_usd is not None
                else f"unknown (no price for {', '.join(self.unpriced)})")
        cut = ([f"warning: {self.truncated_replies} repl(ies) over {MAX_REPLY_CHARS:,} "
                f"characters, judged cut to {MAX_REPLY_CHARS:,}"]
               if self.truncated_replies else [])
        return [f"judgments: {self.judgments} ({self.done} already done)",
                f"provider calls: {self.calls} ({self.cached} answered from the cache)",
                f"prompt tokens: {self.prompt_tokens:,} (estimated)",
                f"completion tokens: up to {self.completion_tokens:,} (max_tokens per call)",
                f"cost: {cost}", *cut]


def estimate_judgments(config: JudgeConfig, candidates: Sequence[Candidate],
                       out_dir: str | Path, *, client: Client) -> Estimate:
    """Count calls, tokens and cost of a run without calling anything or writing files."""
    run = _Run(config, candidates, Path(out_dir), client, read_only=True)
    done = sum(1 for k, input_id in run.keys.items() if run.store.done(k, input_id))
    cached = calls = prompt = completion = 0
    by_judge: Counter[tuple[str, str]] = Counter()
    for chunk in _chunks(run.plan, CHUNK):
        pending = run.pending(chunk)
        keys = [client.cache_key(job.request) for job in pending]
        hits = client.cached_many(keys) if keys else {}
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
                    None if unpriced else cost, unpriced,
                    sum(c.truncated_from is not None for c in candidates))
