"""Judge runner throughput and replay speed on a 2-core machine.

Prints one JSON object last. Goals: ``throughput_ratio_vs_litellm`` >= 0.9,
``replay_seconds`` < 30, ``peak_rss_mb`` < 1024; ``layer_ratio_vs_litellm`` is reported
beside them (what our layer costs where calls go through litellm).

Live part: a loopback OpenAI-compatible stub (a separate process, so it does not compete
for this process's GIL) answers every request after 50 ms with a JSON verdict. The same
requests are sent at the same concurrency, in four alternating rounds in one process
(machine load drifts), by (a) a bare ``litellm.acompletion`` loop under a semaphore, (b)
``run_judgments`` as shipped (render, cache lookup and write, parse, row append with
fsync; the call itself through the openai SDK, as for any OpenAI-compatible server at an
api base, see ``csc_harness/llm/_openai_sdk.py``) and (c) ``run_judgments`` with every
call through litellm (``Client(openai_sdk=False)``, the path of Anthropic, model lists and
OpenAI reasoning models). ``throughput_ratio_vs_litellm`` is (b) over (a): what a user
gets against writing the litellm loop by hand; ``layer_ratio_vs_litellm`` is (c) over (a):
the cost of our own layer on top of litellm. The judge is named ``openai/gpt-4o-mini`` so
every side prices a hosted judge's answers.

Replay part: 25,810 synthetic supporter turns (1,855 dialogues of about 28 utterances)
x 3 dimensions = 77,430 judgments, re-run fully from the cache in ``replay`` mode into a
fresh output folder. To save time the cache is populated directly through the cache writer
(``ResponseCache.put`` with the exact requests the runner builds) instead of by 77,430
stub calls; ``replay_seconds`` times only the re-run.

``--smoke`` (48 live judgments at concurrency 8, 150 replayed turns) checks that this
script still runs (the test suite runs it); its figures mean nothing.

Usage: python benchmarks/bench_judge.py [--judgments 2000] [--concurrency 32] [--turns 25810]
                                        [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PHRASES_ZH = (
    "您好", "请问", "您的", "银行卡", "账户", "这笔交易", "我们", "已经", "为您", "查询到",
    "处理", "申请", "退款", "预计", "个工作日内", "到账", "手机银行", "验证码", "如果",
    "还有", "其他问题", "随时", "联系", "客服热线", "理财产品", "年化收益", "风险等级",
    "非常理解", "您的心情", "给您带来不便", "深表歉意", "请您", "提供", "[手机号码]",
    "[金额]", "元", "，", "。", "？", "感谢", "耐心等待",
)
CODES = ("GT", "IV", "RP", "PR", "EM", "PS", "ID", "RI", "FR", "RC", "AC", "OT")
ROUNDS = 4
JUDGE = "openai/gpt-4o-mini"
VERDICT = '{"rationale": "The reply acknowledges the issue and gives a concrete next step.", "score": 4}'


def serve(port_queue, latency: float) -> None:
    """Child process: the stub, answering every request with one verdict."""
    from csc_harness.llm import StubReply, StubServer

    with StubServer(lambda body: StubReply(VERDICT, prompt_tokens=900, completion_tokens=30),
                    latency=latency) as stub:
        port_queue.put(stub.base_url)
        while True:
            time.sleep(3600)


def synthetic_candidates(turns: int, seed: int = 0):
    """``turns`` supporter turns in dialogues of ~14 supporter turns, one candidate each."""
    from csc_harness.data import Example, Utterance
    from csc_harness.framework import stage_for_turns
    from csc_harness.judge import Candidate

    rng = random.Random(seed)

    def text() -> str:
        return "".join(rng.choice(PHRASES_ZH) for _ in range(rng.randint(8, 24)))

    out, dialogue = [], 0
    while len(out) < turns:
        n = min(rng.randint(12, 16), turns - len(out))
        utterances, codes = [], []
        for _ in range(n):
            code = rng.choice(CODES)
            utterances += [Utterance("customer", text()), Utterance("supporter", text(), code)]
            codes.append(code)
        stages = stage_for_turns(codes)
        for k in range(n):
            i = 2 * k + 1
            ex = Example(f"bench-{dialogue}:{i}", f"bench-{dialogue}", i,
                         tuple(utterances[:i]), codes[k], utterances[i].text,
                         stages[k].value, "账户交易", "zh")
            out.append(Candidate(ex, "bench-model", text(), rng.choice(CODES)))
        dialogue += 1
    return out


async def bare_litellm(base_url: str, requests, concurrency: int) -> float:
    """Seconds for a plain acompletion loop over the same requests."""
    import litellm

    slots = asyncio.Semaphore(concurrency)

    async def one(request) -> None:
        async with slots:
            await litellm.acompletion(
                model=request.model, messages=list(request.messages), api_base=base_url,
                api_key="EMPTY", temperature=request.temperature, max_tokens=request.max_tokens,
                timeout=60, num_retries=0, max_retries=0,
                response_format={"type": "json_schema", "json_schema": {
                    "name": "verdict", "schema": request.response_schema, "strict": True}})

    start = time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    return time.perf_counter() - start


async def ours(base_url: str, candidates, concurrency: int, work: Path,
               openai_sdk: bool = True) -> tuple[float, int]:
    from csc_harness.judge import JudgeConfig, run_judgments
    from csc_harness.llm import Client

    config = JudgeConfig(judges=(JUDGE,), api_base=base_url)
    async with Client(cache_path=work / "cache.sqlite", concurrency=concurrency,
                      openai_sdk=openai_sdk) as client:
        start = time.perf_counter()
        result = await run_judgments(config, candidates, work / "out", client=client,
                                     progress=False)
        seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.message
    return seconds, result.summary["judgments"]


def planned_requests(candidates, base_url: str):
    from csc_harness.judge import JudgeConfig, Plan, load_rubrics

    plan = Plan(JudgeConfig(judges=(JUDGE,), api_base=base_url), candidates,
                load_rubrics())
    return [plan.render(job) for job in plan]


async def live(args, tmp: Path) -> dict:
    ctx = multiprocessing.get_context("spawn")
    port_queue = ctx.Queue()
    server = ctx.Process(target=serve, args=(port_queue, 0.05), daemon=True)
    server.start()
    try:
        base_url = port_queue.get(timeout=60)
        from csc_harness.llm import _litellm

        _litellm.load()  # import cost is not throughput
        warm = synthetic_candidates(20, seed=1)  # every side gets one small warm-up run
        await bare_litellm(base_url, planned_requests(warm, base_url), 8)
        await ours(base_url, warm, 8, tmp / "warm")
        await ours(base_url, warm, 8, tmp / "warm-litellm", openai_sdk=False)
        totals = {"bare": [0.0, 0], "ours": [0.0, 0], "layer": [0.0, 0]}
        for round_ in range(ROUNDS):  # alternate, so drift in machine load hits all alike
            cands = synthetic_candidates(args.judgments // (3 * ROUNDS), seed=10 + round_)
            requests = planned_requests(cands, base_url)
            bare = await bare_litellm(base_url, requests, args.concurrency)
            seconds, n = await ours(base_url, cands, args.concurrency, tmp / f"live{round_}")
            layer_s, layer_n = await ours(base_url, cands, args.concurrency,
                                          tmp / f"layer{round_}", openai_sdk=False)
            print(f"round {round_}: litellm {len(requests) / bare:.1f} calls/s, ours "
                  f"{n / seconds:.1f} judgments/s, ours through litellm "
                  f"{layer_n / layer_s:.1f} judgments/s", file=sys.stderr)
            for side, (secs, count) in (("bare", (bare, len(requests))), ("ours", (seconds, n)),
                                        ("layer", (layer_s, layer_n))):
                totals[side][0] += secs
                totals[side][1] += count
    finally:
        server.terminate()
    rate = {side: count / secs for side, (secs, count) in totals.items()}
    return {"judgments": int(totals["ours"][1]), "seconds": round(totals["ours"][0], 2),
            "judgments_per_s": round(rate["ours"], 1),
            "litellm_calls_per_s": round(rate["bare"], 1),
            "throughput_ratio_vs_litellm": round(rate["ours"] / rate["bare"], 3),
            "through_litellm_judgments_per_s": round(rate["layer"], 1),
            "layer_ratio_vs_litellm": round(rate["layer"] / rate["bare"], 3),
            "concurrency": args.concurrency, "stub_latency_ms": 50}


def populate(candidates, cache_path: Path) -> float:
    """Write one answer per planned request straight through the cache writer."""
    from csc_harness.judge import JudgeConfig, Plan, load_rubrics
    from csc_harness.llm import Response, ResponseCache, cache_key

    start = time.perf_counter()
    plan = Plan(JudgeConfig(judges=(JUDGE,)), candidates, load_rubrics())
    cache = ResponseCache(cache_path)
    for job in plan:
        request = plan.render(job)
        key = cache_key(request)
        cache.put(key, request, Response(
            text=VERDICT, response_model="bench-judge", finish_reason="stop", refusal=None,
            prompt_tokens=900, completion_tokens=30, cost_usd=None, latency_s=0.05,
            cached=False, top_logprobs=None, key=key, structured="json_schema"))
    cache.close()
    return time.perf_counter() - start


async def replay(candidates, cache_path: Path, out: Path) -> tuple[float, int]:
    from csc_harness.judge import JudgeConfig, run_judgments
    from csc_harness.llm import Client

    config = JudgeConfig(judges=(JUDGE,))
    async with Client(cache_path=cache_path, cache_mode="replay") as client:
        start = time.perf_counter()
        result = await run_judgments(config, candidates, out, client=client, progress=False)
        seconds = time.perf_counter() - start
    assert result.exit_code == 0 and result.summary["statuses"][JUDGE]
    return seconds, result.summary["judgments"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=int, default=2000, help="live judgments in total")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--turns", type=int, default=25_810, help="replay: supporter turns")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny size: checks the script runs, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        args.judgments, args.concurrency, args.turns = 48, 8, 150
    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmp:
        tmp_path = Path(tmp)
        report = asyncio.run(live(args, tmp_path))
        candidates = synthetic_candidates(args.turns, seed=2)
        populate_s = populate(candidates, tmp_path / "replay.sqlite")
        replay_s, replayed = asyncio.run(replay(candidates, tmp_path / "replay.sqlite",
                                                tmp_path / "replay-out"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.update({"smoke": args.smoke, "replay_judgments": replayed,
                   "replay_seconds": round(replay_s, 2),
                   "replay_populate_seconds": round(populate_s, 2),
                   "peak_rss_mb": round(peak, 1)})
    report["goals_met"] = (report["throughput_ratio_vs_litellm"] >= 0.9
                           and report["replay_seconds"] < 30 and report["peak_rss_mb"] < 1024)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
