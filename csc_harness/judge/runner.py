"""The judge runner: render, call through the one Client, parse, append rows, resume.

Flow: the plan's jobs are taken in chunks of :data:`CHUNK`; finished ones (rows already in
``OUT/judgments.jsonl``) are skipped unrendered; the rest are rendered and looked up in the
cache in bulk (one ``ResponseCache.get_many`` per chunk), cached answers are turned into
rows at once with no task and no second hash per row, and only misses go through a bounded
queue to worker tasks that call ``Client.complete``. Concurrency and pacing per judge are
the Client's; the runner keeps enough workers to saturate every judge.

Stops: ``--max-cost`` is a :class:`~csc_harness.llm.budget.Budget` on the Client (spend
recorded in the folder counts against it): each call reserves its worst case, settles at its
real cost, and the run stops when the next call cannot fit even with nothing in flight; an
endpoint that gives no answer several times in a row (``llm.client.DEAD_AFTER``) stops the
run with one message; a replay-mode cache miss or a provider failure that no retry can fix
(bad key, unknown model) stops the run; a call that fails after retries becomes an
``error`` row that the next run retries. Every stop leaves a resumable folder.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..contract import JUDGMENTS_FILE, RUN_FILE
from ..errors import CacheMiss, ProviderError, UserError
from ..jsonl import write_json_atomic
from ..llm import BudgetExhausted, check_api_base
from ..lock import folder_lock
from .candidates import Candidate
from .config import JudgeConfig
from .plan import Job, Plan, job_keys
from .rows import error_rows, judgment_rows
from .rubrics import load_rubrics
from .store import JudgmentStore
from .summary import summarize

if TYPE_CHECKING:
    from ..llm import Client, Response
    from ..llm.budget import Budget

__all__ = ["RunResult", "run_judgments"]

CHUNK = 256
StopReason = Literal["budget", "replay_miss", "provider", "errors"]


def _chunks(jobs: Iterable[Job], size: int) -> Iterator[list[Job]]:
    it = iter(jobs)
    while chunk := list(islice(it, size)):
        yield chunk


def _versions() -> dict[str, str]:
    from importlib import metadata

    from .. import __version__

    try:
        litellm = metadata.version("litellm")
    except metadata.PackageNotFoundError:
        litellm = "not installed"
    return {"csc_harness": __version__, "litellm": litellm, "python": platform.python_version()}


def _client_info(client: Client) -> dict[str, Any]:
    cache = getattr(client, "cache", None)
    return {"cache_mode": client.cache_mode, "cache_path": str(cache.path) if cache else None,
            "concurrency": client.concurrency, "rpm": client.rpm, "timeout": client.timeout,
            "max_tries": client.max_tries, "structured": client.structured}


def _fatal(exc: ProviderError) -> bool:
    """A failure every later call would repeat (bad key, unknown model): stop the run."""
    status = getattr(exc, "status", None)
    return not getattr(exc, "retryable", True) and status not in (400, 413, 422)


@dataclass
class RunResult:
    """What a run did; ``exit_code`` is 0 complete, 1 provider errors, 3 stopped by budget."""

    out_dir: Path
    summary: dict[str, Any]
    remaining: int
    """Judgments of the plan not yet written (0 when complete)."""
    errors: int
    """``error`` rows written by this run (retried by the next one)."""
    stop: StopReason | None = None
    message: str | None = None
    lines: list[str] = field(default_factory=list)
    superseded: int = 0
    """Rows whose input changed since they were written (moved to superseded.jsonl)."""

    @property
    def judgments_path(self) -> Path:
        return self.out_dir / JUDGMENTS_FILE

    @property
    def run_path(self) -> Path:
        return self.out_dir / RUN_FILE

    @property
    def exit_code(self) -> int:
        if self.stop == "budget":
            return 3
        return 1 if self.stop is not None or self.errors or self.remaining else 0


class _Run:
    """State of one invocation; see the module docstring for the flow."""

    def __init__(self, config: JudgeConfig, candidates: Sequence[Candidate], out_dir: Path,
                 client: Client, *, read_only: bool = False) -> None:
        self.config, self.client, self.out_dir = config, client, Path(out_dir)
        check_api_base(config.api_base)  # before run.json records the URL
        self.plan = Plan(config, candidates, load_rubrics(config.prompts))
        self.store = JudgmentStore(self.out_dir, read_only=read_only)
        self.keys = {k: job.input_id for job in self.plan for k in job_keys(job, config)}
        self.retried, self.superseded = (0, 0) if read_only else self.store.replace_stale(
            self.keys)
        self.outside_plan = sum(1 for k in self.store.records if k not in self.keys)
        self.budget = None if read_only else self._budget()
        self.stop: StopReason | None = None
        self.message: str | None = None
        self.errors = 0
        self.reasons: Counter[str] = Counter()
        self.logprobs_asked: Counter[str] = Counter()
        self.logprobs_missing: Counter[str] = Counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.bar: Any = None
        self._warm = False
        self.fault: OSError | None = None
        """A write that failed in a worker (disk full), raised once the workers stopped."""
        self.bulk_hits = 0
        """Answers served from the cache in bulk (not through ``Client.complete``)."""
        self._postfix_at = 0.0

    def done(self, job: Job) -> bool:
        return all(self.store.done(k, job.input_id) for k in job_keys(job, self.config))

    def pending(self, chunk: list[Job]) -> list[Job]:
        """Jobs of the chunk still to do, rendered."""
        jobs = [job for job in chunk if not self.done(job)]
        for job in jobs:
            self.plan.render(job)
        return jobs

    def lookup(self, jobs: list[Job]) -> tuple[list[str | None], dict[str, Any]]:
        """Cache keys and bulk-loaded cached answers for a chunk: one query per chunk, after
        which ``Client.complete`` knows the misses and skips its own per-call read."""
        if self.client.cache_mode == "off":
            return [None] * len(jobs), {}
        keys = [self.client.cache_key(job.request) for job in jobs]  # kept on each request
        return keys, self.client.cached_many(keys)

    # -- rows ------------------------------------------------------------------------
    def finish(self, job: Job, response: Response) -> None:
        if self.config.logprobs and not job.pairwise:
            self.logprobs_asked[job.judge] += 1
            if response.top_logprobs is None:
                self.logprobs_missing[job.judge] += 1
        rows, verdicts = judgment_rows(job, self.config, response)
        for verdict in verdicts:
            if verdict.reason:
                self.reasons[verdict.reason.split(":")[0][:60]] += 1
        self.store.add(rows)
        self.progress(len(rows))

    def fail(self, job: Job, exc: ProviderError) -> None:
        self.errors += 1
        self.store.add(error_rows(job, self.config, str(exc)))
        self.progress(len(job.group.dimensions))

    def halt(self, reason: StopReason, message: str) -> None:
        if self.stop is None:
            self.stop, self.message = reason, message

    def progress(self, n: int) -> None:
        if self.bar is None:
            return
        self.bar.update(n)
        now = time.monotonic()
        if now - self._postfix_at > 0.5:
            self._postfix_at = now
            s = self.client.stats
            unknown = "+?" if s.unknown_cost_calls else ""
            self.bar.set_postfix_str(f"{s.prompt_tokens + s.completion_tokens:,} tok, "
                                     f"${s.cost_usd:.4f}{unknown}", refresh=False)

    # -- budget ----------------------------------------------------------------------
    def _budget(self) -> Budget | None:
        """The client's budget (a run or ablation shares one), else one for ``--max-cost``
        with the folder's recorded spend already used; refuses unpriced judges up front."""
        from ..llm.budget import Budget

        budget = self.client.budget
        if budget is None and self.config.max_cost is not None:
            budget = Budget(self.config.max_cost, spent=self.store.spent_usd_before)
        if budget is not None:
            unpriced = [j for j in self.config.judges if j not in budget.free
                        and self.client.price(j, 1000, 1000) is None]
            if unpriced:
                raise UserError(f"--max-cost needs prices, and litellm's price map has none for "
                                f"{', '.join(map(repr, unpriced))} (a self-hosted model?); "
                                "drop --max-cost or use a priced model name")
        return budget

    def budget_message(self) -> str:
        """Why the budget stopped the run, with the real spend once calls in flight settled."""
        budget = self.budget
        assert budget is not None and budget.stopped is not None
        return (f"stopped before exceeding --max-cost ${budget.cap:g}: spent "
                f"${budget.spent:.4f} (${budget.spent_now:.4f} in this run), "
                f"${budget.left:.4f} left and the next call could cost up to "
                f"${budget.stopped.needed:.4f}; re-run with a higher --max-cost to continue")

    # -- the loop --------------------------------------------------------------------
    async def produce(self, queue: asyncio.Queue,
                      rendered: Iterable[list[Job]] | None = None) -> None:
        """Queue the pending jobs; ``rendered``: chunks already rendered (batch mode)."""
        source = rendered if rendered is not None else (
            self.pending(chunk) for chunk in _chunks(self.plan, CHUNK))
        for pending in source:
            if self.stop:
                return
            if not pending:
                continue
            keys, hits = self.lookup(pending)
            for job, key in zip(pending, keys):
                if self.stop:
                    return
                if key in hits:
                    self.bulk_hits += hits[key].cached  # a fresh batch answer is no hit
                    self.finish(job, hits[key])
                    continue
                if not self._warm:  # import litellm now, not inside the first call's timing
                    self._warm = True
                    for judge in self.config.judges:
                        self.client.price(judge, 1, 1)
                await queue.put(job)

    async def work(self, queue: asyncio.Queue) -> None:
        while (job := await queue.get()) is not None:
            if self.stop:
                continue
            try:
                response = await self.client.complete(job.request)
            except BudgetExhausted:
                self.halt("budget", "")  # the message is written with the final spend
                continue
            except CacheMiss as exc:
                item = job.candidates[0].item.item_id
                self.halt("replay_miss", f"{exc} [item {item!r}, judge {job.judge!r}, "
                          f"template {job.group.rubric.name!r}]")
                continue
            except ProviderError as exc:
                if _fatal(exc):
                    self.halt("provider", str(exc))
                else:
                    self.fail(job, exc)
                continue
            try:
                self.finish(job, response)
            except OSError as exc:  # disk full: stop every worker, raise it after the run
                self.fault = self.fault or exc
                self.halt("errors", f"cannot write {self.store.path}: {exc.strerror or exc}")

    async def execute(self, progress: bool | None) -> None:
        from tqdm import tqdm

        done = sum(1 for k, input_id in self.keys.items() if self.store.done(k, input_id))
        self.bar = tqdm(total=self.plan.judgments, initial=done, unit="judgment",
                        file=sys.stderr, disable=None if progress is None else not progress,
                        dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        workers_n = min(1024, self.client.concurrency * len(self.config.judges))
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * workers_n)
        previous, self.client.budget = self.client.budget, self.budget
        workers = [asyncio.create_task(self.work(queue)) for _ in range(workers_n)]
        try:
            rendered = None
            if getattr(self.client, "batch", False):  # the client may obtain answers ahead
                # rendered once: the same jobs are prefilled, then queued
                rendered = [p for chunk in _chunks(self.plan, CHUNK) if (p := self.pending(chunk))]
                await self.client.prefill((job.request for chunk in rendered for job in chunk),
                                          self.out_dir)
            await self.produce(queue, rendered)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
            if self.fault is not None:
                raise self.fault
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.client.budget = previous
            self.store.close()
            self.bar.close()

    # -- reporting -------------------------------------------------------------------
    def report(self, status: str) -> RunResult:
        records = [self.store.records[k] for k in self.keys if k in self.store.records]
        summary = summarize(records, self.config.judges, self.plan.dimensions)
        remaining = sum(1 for k, input_id in self.keys.items()
                        if not self.store.done(k, input_id))
        if self.stop == "budget" and self.budget is not None and self.budget.stopped:
            self.message = self.budget_message()
        if status != "running" and self.stop is None and self.errors:
            self.message = (f"{self.errors} call(s) failed after retries and were written "
                            "as 'error' rows; re-run the same command to retry them")
        write_json_atomic(self.out_dir / RUN_FILE, {
            "command": "judge", "status": status if remaining or status == "running"
            else "complete", "stop_reason": self.stop, "message": self.message,
            "started_at": self.started,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": self.config.as_dict(), "client": _client_info(self.client),
            "versions": _versions(), "prompts": self._prompts(), "plan": self._plan_info(),
            "session": {**self.client.stats.as_dict(),
                        "cache_hits": self.client.stats.cache_hits + self.bulk_hits,
                        "error_rows": self.errors,
                        "retried_error_rows": self.retried,
                        "superseded_rows": self.superseded,
                        "rows_outside_plan": self.outside_plan,
                        "torn_bytes_cut": self.store.truncated_bytes,
                        "not_ok_reasons": dict(self.reasons),
                        "budget": self.budget.as_dict() if self.budget else None},
            "remaining": remaining, "totals": summary,
            "outputs": {"judgments": str(self.store.path), "run": str(self.out_dir / RUN_FILE)},
            "notes": self.notes(),
        })
        return RunResult(self.out_dir, summary, remaining, self.errors, self.stop, self.message,
                         lines=self.notes(), superseded=self.superseded)

    def notes(self) -> list[str]:
        """Options a server did not honour: said, never dropped silently."""
        out = []
        for judge, missing in sorted(self.logprobs_missing.items()):
            base = self.config.api_base or "the provider default"
            out.append(f"--logprobs {self.config.logprobs}: {judge} at {base} returned no "
                       f"log-probabilities for {missing} of {self.logprobs_asked[judge]} "
                       "answers, so their weighted_score is null (the embedded server gives "
                       "them only when started with serve-local --logprobs)")
        return out

    def _prompts(self) -> dict[str, Any]:
        out = {}
        for job in islice(self.plan, len(self.plan.groups)):
            rubric = job.group.rubric
            out[rubric.name] = {"prompt_id": job.prompt_id, "variant": job.variant,
                                "version": rubric.version, "path": str(rubric.path),
                                "dimensions": list(job.group.dimensions),
                                "verdict": self.plan.verdict(job)}
        return out

    def _plan_info(self) -> dict[str, Any]:
        models = sorted({c.model for c in self.plan.candidates})
        return {"candidates": len(self.plan.candidates), "models": models,
                "items": len({c.item.item_id for c in self.plan.candidates}),
                "dimensions": self.plan.dimensions, "calls": len(self.plan),
                "judgments": self.plan.judgments, "unpaired_replies": self.plan.unpaired,
                "truncated_replies": sum(c.truncated_from is not None
                                         for c in self.plan.candidates)}


async def run_judgments(config: JudgeConfig, candidates: Sequence[Candidate],
                        out_dir: str | Path, *, client: Client,
                        progress: bool | None = None) -> RunResult:
    """Judge ``candidates`` into ``out_dir`` (``judgments.jsonl`` + ``run.json``).

    Resumes whatever the folder already holds. ``progress=None`` shows a bar only on a
    terminal. Returns a :class:`RunResult`; raises :class:`CacheMiss` after writing what
    was done when replay mode meets an uncached request.
    """
    with folder_lock(out_dir):
        run = _Run(config, candidates, Path(out_dir), client)
        run.report("running")
        try:
            await run.execute(progress)
        finally:
            result = run.report("incomplete")
    if run.stop == "replay_miss":
        raise CacheMiss(f"{run.message}; {result.remaining} judgment(s) not done")
    if run.stop == "provider":
        raise ProviderError(f"{run.message}; {result.remaining} judgment(s) not done - fix "
                            "the cause and re-run the same command to resume")
    return result
