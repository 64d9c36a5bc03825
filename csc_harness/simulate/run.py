"""``csc-harness simulate`` as a library call: scenarios, conversations, judging, board.

Output folder ``OUT``:

``scenarios.jsonl``    the simulated customers (reused by every later run)
``transcripts.jsonl``  one row per (scenario, model, sample), appended whole
``judge/<variant>/``   conversation-level judgments.jsonl and run.json per rubric variant
                       (``conversation``, ``conversation_rolecs``; with ``--judge``)
``leaderboard.md/.csv/.json``, ``report.html``, ``run.json``

The folder is locked for the whole run; a run killed at any point resumes: finished
conversations are skipped, a conversation in progress is replayed from the provider cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..contract import SCENARIOS_FILE, TRANSCRIPTS_FILE
from ..errors import UserError
from ..jsonl import write_json_atomic
from ..lock import folder_lock
from ..profiles import EMBEDDED
from .conversation import Cast, conversation_id, converse
from .roles import RoleModel
from .scenarios import PlannerLimits, Scenario, ScenarioStore, load_scenarios_file, plan_scenarios
from .store import TranscriptStore

if TYPE_CHECKING:
    from ..llm import Client

__all__ = ["DEMO", "SimulateOptions", "simulate", "simulate_conversations"]

Rubric = Literal["conversation", "rolecs", "both"]
RUBRIC_VARIANTS = {"conversation": ("conversation",), "rolecs": ("conversation_rolecs",),
                   "both": ("conversation", "conversation_rolecs")}
DEMO = {"scenarios": 2, "max_turns": 6}
"""The no-argument demonstration: the embedded model in every role, few short conversations."""
DEFAULT_SCENARIOS = 20
EMBEDDED_PLANNER = {"utterances": 6, "max_tokens": 150}
"""The embedded planner reads the dialogue's first 6 utterances and answers in <= 150 tokens."""
SUPPORTER_MAX_TOKENS = 200
CUSTOMER_MAX_TOKENS = 256


@dataclass(frozen=True)
class SimulateOptions:
    """What ``csc-harness simulate`` was asked; recorded in ``OUT/run.json``."""

    out: str
    models: tuple[str, ...] = ()
    """Candidate models (the supporter); empty = the embedded model (a demonstration)."""
    api_base: str | None = None
    customer: str | None = None
    """Plays planner, customer coach and customer; None = the embedded model."""
    customer_api_base: str | None = None
    judges: tuple[str, ...] = ()
    """Conversation judges; empty = none, or the embedded model in the demonstration."""
    judge_api_base: str | None = None
    rubric: Rubric = "conversation"
    """Which conversation rubric(s): the default three dimensions, RoleCS's criteria, both."""
    data: str | None = None
    scenarios_file: str | None = None
    """A user's scenarios file instead of planning from dialogues."""
    scenarios: int | None = None
    """First N scenarios; None = 20, or 2 in the demonstration."""
    max_turns: int | None = None
    """Utterance cap; None = 50 (RoleCS), or 6 in the demonstration."""
    samples: int = 1
    concurrency: int = 8
    """Conversations in flight (the embedded model: one per server worker)."""
    cache: str | None = None
    rounds: int = 1000
    progress: bool = True
    demonstration: bool = False
    """Set by :meth:`resolved` when no candidate was named (the embedded demo run)."""

    def __post_init__(self) -> None:
        from ..llm import check_api_base

        for name, low in (("scenarios", 1), ("max_turns", 2), ("samples", 1),
                          ("concurrency", 1), ("rounds", 1)):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < low):
                raise UserError(f"--{name.replace('_', '-')} must be a whole number >= {low}, "
                                f"got {value!r}")
        if self.rubric not in RUBRIC_VARIANTS:
            raise UserError(f"--rubric {self.rubric!r} is not one of "
                            f"{', '.join(RUBRIC_VARIANTS)}")
        if self.scenarios_file and self.data:
            raise UserError("give --data (plan scenarios from dialogues) or --scenarios-file, "
                            "not both")
        for base in (self.api_base, self.customer_api_base, self.judge_api_base):
            check_api_base(base)

    @property
    def demo(self) -> bool:
        return self.demonstration or not self.models

    def resolved(self) -> SimulateOptions:
        """Defaults filled in: the embedded model's one spelling, the demo's sizes."""
        def one(name: str) -> str:
            return EMBEDDED.model if EMBEDDED.matches(name) else name

        demo = self.demo
        return replace(
            self, models=tuple(map(one, self.models or (EMBEDDED.model,))),
            customer=one(self.customer or EMBEDDED.model),
            judges=tuple(map(one, self.judges or ((EMBEDDED.model,) if demo else ()))),
            scenarios=self.scenarios or (DEMO["scenarios"] if demo else DEFAULT_SCENARIOS),
            max_turns=self.max_turns or (DEMO["max_turns"] if demo else 50),
            demonstration=demo)


def load_scenarios(opts: SimulateOptions, store: ScenarioStore) -> list[Scenario] | None:
    """User scenarios (stored as given), or None when they must be planned from dialogues."""
    if not opts.scenarios_file:
        return None
    scenarios = load_scenarios_file(opts.scenarios_file)[: opts.scenarios]
    for scenario in scenarios:
        store.add(scenario)
    return scenarios


async def simulate_conversations(
    scenarios: Sequence[Scenario], casts: Sequence[Cast], *, client: Client,
    store: TranscriptStore, samples: int = 1, concurrency: int = 8, progress: bool = False,
) -> int:
    """Play every (scenario, cast, sample) conversation not yet in ``store``; returns how
    many were added. Conversations run concurrently (at most ``concurrency``), turns of one
    conversation in order. A provider failure stops the run; finished rows stay."""
    from tqdm import tqdm

    from ..rollout import _run_all

    todo = [(s, c, k) for c in casts for s in scenarios for k in range(samples)
            if not store.has(conversation_id(s.id, k), c.name)]
    total = len(scenarios) * len(casts) * samples
    bar = tqdm(total=total, initial=total - len(todo), unit="conversation", desc="simulate",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)

    async def one(scenario: Scenario, cast: Cast, sample: int) -> None:
        store.add(await converse(scenario, sample, cast, client))
        bar.update(1)

    try:
        await _run_all((functools.partial(one, *job) for job in todo), concurrency)
    finally:
        bar.close()
    return len(todo)


@contextlib.contextmanager
def _servers(opts: SimulateOptions) -> Iterator[Any]:
    """The embedded model's local server when any role needs it, else None."""
    roles = (*opts.models, opts.customer, *opts.judges)
    needs_local = EMBEDDED.model in roles and not (
        (opts.customer == EMBEDDED.model and opts.customer_api_base)
        or (EMBEDDED.model in opts.models and opts.api_base))
    if not needs_local:
        yield None
        return
    from ..llm.local import local_server

    with local_server(log_dir=opts.out) as server:
        yield server


def _casts(opts: SimulateOptions, server: Any) -> tuple[list[Cast], RoleModel]:
    def base(model: str, given: str | None) -> str | None:
        return server.base_url if server is not None and model == EMBEDDED.model else given

    guard = server.check if server is not None else None
    customer = RoleModel(opts.customer, base(opts.customer, opts.customer_api_base),  # type: ignore[arg-type]
                         max_tokens=(96 if opts.customer == EMBEDDED.model
                                     else CUSTOMER_MAX_TOKENS), temperature=0.7)
    casts = [Cast(RoleModel(m, base(m, opts.api_base),
                            max_tokens=EMBEDDED.max_tokens if m == EMBEDDED.model
                            else SUPPORTER_MAX_TOKENS,
                            temperature=0.0 if opts.samples == 1 else 0.7),
                  customer, m, opts.max_turns or 50, guard) for m in opts.models]
    return casts, customer


async def _simulate_async(opts: SimulateOptions, server: Any) -> dict[str, Any]:
    from ..llm import Client

    out = Path(opts.out)
    record: dict[str, Any] = {"command": "simulate", "options": asdict(opts), "steps": {}}
    casts, planner = _casts(opts, server)
    local = server is not None
    structured = EMBEDDED.structured if local and (
        opts.customer == EMBEDDED.model or EMBEDDED.model in opts.judges) else "auto"
    width = server.workers if local else opts.concurrency
    async with Client(cache_path=opts.cache, concurrency=max(width, opts.concurrency),
                      timeout=EMBEDDED.timeout_s if local else 120.0,
                      structured=structured) as client:  # type: ignore[arg-type]
        started = time.perf_counter()
        scenarios = await _scenarios(opts, ScenarioStore(out), client, planner, width)
        record["scenario_ids"] = [s.id for s in scenarios]
        record["steps"]["scenarios"] = {"n": len(scenarios),
                                        "seconds": round(time.perf_counter() - started, 1)}
        started = time.perf_counter()
        transcripts = TranscriptStore(out)
        added = await simulate_conversations(scenarios, casts, client=client, store=transcripts,
                                             samples=opts.samples, concurrency=width,
                                             progress=opts.progress)
        record["steps"]["conversations"] = {
            "n": len(scenarios) * len(casts) * opts.samples, "new": added,
            "seconds": round(time.perf_counter() - started, 1)}
        if opts.judges:
            from .judging import judge_transcripts

            started = time.perf_counter()
            judge_base = (server.base_url if local and EMBEDDED.model in opts.judges
                          else opts.judge_api_base)
            rows = _selected(transcripts, scenarios, casts, opts.samples)
            summary = await judge_transcripts(
                rows, judges=opts.judges, api_base=judge_base, out=out / "judge",
                client=client, variants=RUBRIC_VARIANTS[opts.rubric],
                embedded=local and EMBEDDED.model in opts.judges, progress=opts.progress)
            record["steps"]["judging"] = summary | {
                "seconds": round(time.perf_counter() - started, 1)}
        record["client"] = client.stats.as_dict()
    return record


async def _scenarios(opts: SimulateOptions, store: ScenarioStore, client: Client,
                     planner: RoleModel, width: int) -> list[Scenario]:
    """The user's scenarios, else ones planned from dialogues. The embedded model plans
    from the first :data:`EMBEDDED_PLANNER` utterances with a short reply cap (its
    planning was most of the demonstration's time) and falls back to a plain scenario
    when its JSON is unusable (a 135M model often writes none)."""
    from ..data import load_conversations

    scenarios = load_scenarios(opts, store)
    if scenarios is not None:
        return scenarios
    conversations = load_conversations(opts.data)
    if opts.demo and not opts.data:  # the 135M demo model writes English far better
        conversations = [c for c in conversations if c.language == "en"] or conversations
    conversations = conversations[: opts.scenarios]
    if planner.model == EMBEDDED.model:
        planner = replace(planner, max_tokens=EMBEDDED_PLANNER["max_tokens"])
        limits = PlannerLimits(EMBEDDED_PLANNER["utterances"], fallback=True)
    else:
        planner, limits = replace(planner, max_tokens=max(planner.max_tokens, 200)), \
            PlannerLimits()
    return await plan_scenarios(conversations, store, client, planner, concurrency=width,
                                limits=limits)


def _selected(store: TranscriptStore, scenarios: Sequence[Scenario], casts: Sequence[Cast],
              samples: int) -> list[dict[str, Any]]:
    """This run's transcript rows (the file may hold others from earlier runs)."""
    return [store.rows[(conversation_id(s.id, k), c.name)]
            for c in casts for s in scenarios for k in range(samples)]


def simulate(opts: SimulateOptions, *, server: Any = None) -> dict[str, Any]:
    """Run scenarios, conversations, judging (with judges), leaderboard and report into
    ``opts.out``; returns what ``OUT/run.json`` records. Sync: the CLI edge. ``server``: an
    embedded-model server already running (``csc-harness run --interactive``)."""
    from .board import write_board

    opts = opts.resolved()
    out = Path(opts.out)
    started = time.perf_counter()
    running = contextlib.nullcontext(server) if server is not None else _servers(opts)
    with folder_lock(out), running as live:
        record = asyncio.run(_simulate_async(opts, live))
        wanted = _wanted(opts, record["scenario_ids"])
        written = write_board(out, wanted, judged=bool(opts.judges), rounds=opts.rounds,
                              embedded=opts.demo)
        record["outputs"] = [SCENARIOS_FILE, TRANSCRIPTS_FILE, *(p.name for p in written)]
        if opts.demo or EMBEDDED.model in (*opts.models, opts.customer, *opts.judges):
            record["label"] = EMBEDDED.label
        record["seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomic(out / "run.json", record)
    return record


def _wanted(opts: SimulateOptions, scenario_ids: Sequence[str]) -> list[dict[str, Any]]:
    """This run's transcript rows, in scenario order."""
    store = TranscriptStore(opts.out)
    return [store.rows[(conversation_id(s, k), m)] for m in opts.models for s in scenario_ids
            for k in range(opts.samples) if (conversation_id(s, k), m) in store.rows]
