"""Interactive-evaluation throughput: whole conversations against a slow loopback stub.

100 scenarios x 2 candidate models, every role (customer coach, customer, supporter) served
by a loopback OpenAI-compatible stub in a separate process (so it does not share this
process's GIL) that answers each request after 50 ms. Each conversation runs 10 utterances
(the customer says it is done at the tenth), i.e. 5 supporter + 8 customer-role calls.

Throughput is provider-bound when the harness adds little to what the provider allows a
client at the same concurrency: the requests the conversations sent are replayed by a bare
loop over the same openai SDK client with the same number in flight
(``bare_client_calls_per_s``), and ``ratio_vs_bare_client`` (our calls/s over the bare
loop's) must be >= 0.9. Each conversation's calls wait on each other, so conversations in
flight are the calls in flight. ``bound_ratio`` compares with the ideal ceiling, conversations
in flight / (calls per conversation x 50 ms); it stays below 1 even for the bare loop (the
stub and the HTTP stack take a few ms per call). Measured at the command's default
concurrency (``simulate --concurrency``, 8) and, as ``stress``, at 64 in flight, where the
ceiling would need ~1,300 calls/s: more than one Python core can send through any HTTP
client, so there the client's CPU per call decides. ``client_cpu_ms_per_call`` is this
process's user+system CPU over the conversation phase / provider calls (the bare loop's
beside it). ``main_runqueue_share`` is the share of the phase the event-loop thread spent
runnable but waiting for a CPU (Linux schedstat): near 0 on an idle machine, large when
other jobs load the cores.

``--smoke`` (4 scenarios x 2 models, 6 utterances) checks that the script still runs; its
figures mean nothing.

Usage: python benchmarks/bench_simulate.py [--scenarios 100] [--concurrency 8]
                                           [--stress 64] [--turns 10] [--smoke]
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


def _supporter(body: dict) -> str:
    """Each model's own words, as real models differ: no customer call is shared between
    the two models' conversations (they would be answered once, from the cache)."""
    first = not any(m["role"] == "assistant" for m in body["messages"])
    strategy = "Greeting" if first else "Problem Refinement"
    return f"[{strategy}] ({body['model']}) How can I help with the transfer?"


def _serve(queue, stop, finished_after: int) -> None:
    from test_simulate_support import scripted

    from csc_harness.llm import StubServer

    with StubServer(scripted(_supporter, finished_after=finished_after),
                    latency=LATENCY) as stub:
        queue.put(stub.base_url)
        stop.wait()


async def _conversations(base: str, scenarios, models, out: Path, concurrency: int,
                         turns: int) -> dict:
    """One round of conversations into a fresh folder and cache."""
    from csc_harness.llm import Client
    from csc_harness.simulate import Cast, RoleModel, TranscriptStore, simulate_conversations

    customer = RoleModel("openai/customer", base)
    casts = [Cast(RoleModel(m, base, max_tokens=64, temperature=0.0), customer, m, turns + 2)
             for m in models]
    sent: list[dict] = []
    async with Client(cache_path=out / "cache.sqlite", concurrency=concurrency) as client:
        client.price("openai/customer", 1, 1)  # import litellm before the clock starts
        send = client._sdk.acompletion

        async def recording(kwargs: dict):
            sent.append(kwargs)
            return await send(kwargs)

        client._sdk.acompletion = recording  # type: ignore[method-assign]
        store = TranscriptStore(out)
        cpu0, wall0, wait0 = _cpu(), time.perf_counter(), _runqueue_wait()
        added = await simulate_conversations(scenarios, casts, client=client, store=store,
                                             concurrency=concurrency)
        wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
        wait = _runqueue_wait() - wait0 if wait0 is not None else None
    lengths = sorted({r["n_turns"] for r in store.rows.values()})
    return {"added": added, "wall": wall, "cpu": cpu, "calls": client.stats.calls,
            "wait": wait, "utterances": lengths, "sent": sent}


async def _bare(sent: list[dict], concurrency: int) -> dict:
    """The same requests from a bare loop over the same SDK client: the pace this provider
    allows a client at this concurrency, with no harness around the calls."""
    from csc_harness.llm._openai_sdk import SdkClients

    clients, slots = SdkClients(), asyncio.Semaphore(concurrency)

    async def one(kwargs: dict) -> None:
        async with slots:
            await clients.acompletion(kwargs)

    cpu0, wall0 = _cpu(), time.perf_counter()
    await asyncio.gather(*(one(kwargs) for kwargs in sent))
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    await clients.aclose()
    return {"wall": wall, "cpu": cpu, "calls": len(sent)}


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


def _measure(base: str, scenarios, models, args, concurrency: int) -> dict:
    """One round of conversations at ``concurrency`` in flight, summarised."""
    with tempfile.TemporaryDirectory() as tmp:
        run = asyncio.run(_conversations(base, scenarios, models, Path(tmp), concurrency,
                                         args.turns))
    bare = asyncio.run(_bare(run["sent"], concurrency))
    bare_rate = bare["calls"] / bare["wall"]
    sequential = run["calls"] / max(run["added"], 1)  # a conversation's calls wait on each other
    ceiling = min(concurrency, len(scenarios) * len(models)) / (sequential * LATENCY)
    rate = run["added"] / run["wall"]
    return {
        "concurrency": concurrency, "new": run["added"], "utterances": run["utterances"],
        "calls": run["calls"], "conversations_per_s": round(rate, 2),
        "calls_per_s": round(run["calls"] / run["wall"], 1),
        "ceiling_conversations_per_s": round(ceiling, 2),
        "bound_ratio": round(rate / ceiling, 3),
        "bare_client_calls_per_s": round(bare_rate, 1),
        "ratio_vs_bare_client": round(run["calls"] / run["wall"] / bare_rate, 3),
        "client_cpu_ms_per_call": round(1000 * run["cpu"] / max(run["calls"], 1), 2),
        "bare_client_cpu_ms_per_call": round(1000 * bare["cpu"] / max(bare["calls"], 1), 2),
        "main_runqueue_share": None if run["wait"] is None
        else round(run["wait"] / run["wall"], 3),
    }


def main() -> None:
    from csc_harness.simulate.run import SimulateOptions

    default = SimulateOptions.__dataclass_fields__["concurrency"].default
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=default)
    parser.add_argument("--stress", type=int, default=64)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.scenarios, args.concurrency, args.stress, args.turns = 4, 4, 8, 6
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
        base = queue.get(timeout=60)
        result = _measure(base, scenarios, models, args, args.concurrency)
        stress = _measure(base, scenarios, models, args, args.stress)
    finally:
        stop.set()
        server.join(timeout=10)
    result = {"smoke": args.smoke, "conversations": len(scenarios) * len(models),
              "latency_s": LATENCY, **result,
              "goal_met": result["ratio_vs_bare_client"] >= 0.9,
              "stress": stress, "load_avg_1m": round(load, 2), "cpus": os.cpu_count(),
              "seconds": round(time.perf_counter() - started, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
