"""Interactive-evaluation throughput: whole conversations against a slow loopback stub.

100 scenarios x 2 candidate models, every role (customer coach, customer, supporter) served
by a loopback OpenAI-compatible stub in a separate process (so it does not share this
process's GIL) that answers each request after 50 ms. Each conversation runs 10 utterances
(the customer says it is done at the tenth), i.e. 5 supporter + 8 customer-role calls.

Two ceilings bound the throughput. The provider's: conversations in flight / (sequential
calls per conversation x latency) (``ceiling_conversations_per_s``; ``bound_ratio`` is
conversations/s over it). And litellm's own CPU per call: ``litellm.acompletion`` alone
costs ~5-8 ms of CPU per call (its executor hop, cost and logging hooks), so one core
cannot send more than ~150-200 calls/s, far below the ~800 calls/s the provider ceiling
needs at 64 conversations in flight. So the run also replays the very requests the
conversations sent through a bare ``litellm.acompletion`` loop at the same concurrency
(rounds: conversations, bare, conversations; the machine's load drifts) and reports
``ratio_vs_litellm`` (our calls/s over the bare loop's; goal >= 0.8: the harness adds
little to litellm) next to ``bound_ratio``. ``main_runqueue_share`` is the share of the
conversation phase the event-loop thread spent runnable but waiting for a CPU (Linux
schedstat): near 0 on an idle machine, large when other jobs load the cores, which is
what pulls ``bound_ratio`` down on a shared machine. ``client_cpu_ms_per_call`` is this
process's user+system CPU over the conversation phase / provider calls.

``--smoke`` (4 scenarios x 2 models, 6 utterances) checks that the script still runs; its
figures mean nothing.

Usage: python benchmarks/bench_simulate.py [--scenarios 100] [--concurrency 64]
                                           [--turns 10] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

LATENCY = 0.05


def _serve(queue, stop, finished_after: int) -> None:
    from test_simulate_support import scripted

    from csc_harness.llm import StubServer

    with StubServer(scripted(finished_after=finished_after), latency=LATENCY) as stub:
        queue.put(stub.base_url)
        stop.wait()


async def _conversations(base: str, scenarios, models, out: Path, concurrency: int,
                         turns: int) -> dict:
    """One round of conversations into a fresh folder and cache; records the requests sent."""
    from csc_harness.llm import Client, _litellm
    from csc_harness.simulate import Cast, RoleModel, TranscriptStore, simulate_conversations

    customer = RoleModel("openai/customer", base)
    casts = [Cast(RoleModel(m, base, max_tokens=64, temperature=0.0), customer, m, turns + 2)
             for m in models]
    sent: list[dict] = []
    send = _litellm.acompletion

    async def recording(kwargs: dict):
        sent.append(kwargs)
        return await send(kwargs)

    _litellm.acompletion = recording  # the client looks it up on the module at each call
    try:
        async with Client(cache_path=out / "cache.sqlite", concurrency=concurrency) as client:
            client.price("openai/customer", 1, 1)  # import litellm before the clock starts
            store = TranscriptStore(out)
            cpu0, wall0, wait0 = _cpu(), time.perf_counter(), _runqueue_wait()
            added = await simulate_conversations(scenarios, casts, client=client, store=store,
                                                 concurrency=concurrency)
            wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
            wait = _runqueue_wait() - wait0 if wait0 is not None else None
    finally:
        _litellm.acompletion = send
    lengths = sorted({r["n_turns"] for r in store.rows.values()})
    return {"added": added, "wall": wall, "cpu": cpu, "calls": client.stats.calls,
            "wait": wait, "utterances": lengths, "sent": sent}


async def _bare(sent: list[dict], concurrency: int) -> dict:
    """The same requests through a plain ``litellm.acompletion`` loop: litellm's own pace."""
    from csc_harness.llm import _litellm

    litellm = _litellm.load()
    slots = asyncio.Semaphore(concurrency)

    async def one(kwargs: dict) -> None:
        async with slots:
            await litellm.acompletion(**kwargs)

    cpu0, wall0 = _cpu(), time.perf_counter()
    await asyncio.gather(*(one(kwargs) for kwargs in sent))
    return {"wall": time.perf_counter() - wall0, "cpu": _cpu() - cpu0, "calls": len(sent)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _runqueue_wait() -> float | None:
    """Seconds this (event-loop) thread has spent runnable but not running; None off Linux."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _measure(base: str, scenarios, models, args) -> tuple[list[dict], list[dict]]:
    """Rounds alternate (conversations, bare litellm, conversations) as the load drifts."""
    runs, bares = [], []
    for round_ in range(1 if args.smoke else 2):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(asyncio.run(_conversations(base, scenarios, models, Path(tmp),
                                                   args.concurrency, args.turns)))
        if round_ == 0:
            bares.append(asyncio.run(_bare(runs[0]["sent"], args.concurrency)))
    return runs, bares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.scenarios, args.concurrency, args.turns = 4, 4, 6
    from csc_harness.simulate import Scenario

    scenarios = [Scenario(f"b{i:03d}", "account", "en", "A patient retiree.",
                          "Find a missing transfer.", f"Hello, my transfer #{i} is missing.")
                 for i in range(args.scenarios)]
    models = ("openai/cand-a", "openai/cand-b")
    queue, stop = multiprocessing.Queue(), multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(queue, stop, args.turns), daemon=True)
    server.start()
    started, load = time.perf_counter(), os.getloadavg()[0]
    try:
        runs, bares = _measure(queue.get(timeout=60), scenarios, models, args)
    finally:
        stop.set()
        server.join(timeout=10)
    print(json.dumps(_result(args, runs, bares, len(scenarios) * len(models), started, load)))


def _result(args, runs: list[dict], bares: list[dict], conversations: int, started: float,
            load: float) -> dict:
    wall, cpu = sum(r["wall"] for r in runs), sum(r["cpu"] for r in runs)
    calls, added = sum(r["calls"] for r in runs), sum(r["added"] for r in runs)
    waits = [r["wait"] for r in runs]
    bare_wall = sum(b["wall"] for b in bares)
    bare_calls = sum(b["calls"] for b in bares)
    sequential = args.turns // 2 + (args.turns // 2 - 1) * 2  # supporter + coach/customer calls
    ceiling = min(args.concurrency, conversations) / (sequential * LATENCY)
    return {
        "smoke": args.smoke, "conversations": conversations, "rounds": len(runs),
        "new": runs[-1]["added"], "utterances": runs[-1]["utterances"],
        "calls": runs[-1]["calls"], "concurrency": args.concurrency, "latency_s": LATENCY,
        "conversations_per_s": round(added / wall, 2), "calls_per_s": round(calls / wall, 1),
        "ceiling_conversations_per_s": round(ceiling, 2),
        "bound_ratio": round(added / wall / ceiling, 3),
        "litellm_calls_per_s": round(bare_calls / bare_wall, 1),
        "ratio_vs_litellm": round(calls / wall / (bare_calls / bare_wall), 3),
        "client_cpu_ms_per_call": round(1000 * cpu / max(calls, 1), 2),
        "litellm_cpu_ms_per_call": round(
            1000 * sum(b["cpu"] for b in bares) / max(bare_calls, 1), 2),
        "main_runqueue_share": None if None in waits else round(sum(waits) / wall, 3),
        "load_avg_1m": round(load, 2), "cpus": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    main()
