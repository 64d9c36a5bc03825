"""What a full CSConv judging run costs, in four set-ups, at list prices: no call is made.

The bundled sample's supporter turns are judged (gold replies as candidates) with the real
judge prompts; prompt tokens come from litellm's tokenizer for each judge, and are scaled
to CSConv's size (25,810 turns x 3 dimensions). Completion tokens are an assumption
(:data:`OUTPUT_PER_DIMENSION` tokens of rationale + score per dimension). Prices are
litellm's price map (batch, cache-read and cache-write prices included).

Set-ups, for a Claude and a GPT judge:

1. ``separate``: one online call per dimension (three calls per turn);
2. ``joint``: one online call scores the three dimensions;
3. ``joint_cached``: joint, with provider prompt caching: Anthropic reads the constant
   prefix (system prompt + task + rubric, the breakpoint the client places) from its
   cache at the cache-read price when that prefix reaches the model's minimum (1,024
   tokens), one cache write per template; OpenAI caches any shared prefix of 1,024+
   tokens by itself (in 128-token steps), so each call reads what it shares with the
   previous call of the same conversation;
4. ``joint_cached_batch``: the same through the batch API at batch prices (for OpenAI no
   cache credit is assumed inside a batch: a conservative figure).

Last line: one JSON object with ``naive_usd`` (set-up 1, both judges), ``best_usd``
(set-up 4, both judges) and ``best_over_naive`` (goal: at most 0.25).

Usage: python benchmarks/bench_cost.py [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from csc_harness.data import load_examples
from csc_harness.judge import JudgeConfig
from csc_harness.judge.candidates import Candidate
from csc_harness.judge.plan import Plan
from csc_harness.judge.rubrics import load_rubrics
from csc_harness.llm import _litellm
from csc_harness.llm.router import common_prefix

CSCONV_TURNS = 25_810
JUDGES = ("anthropic/claude-sonnet-4-5", "openai/gpt-4o")
OUTPUT_PER_DIMENSION = 70
MIN_CACHED = 1024
OPENAI_STEP = 128


def _tokens(model: str, text: str) -> int:
    return _litellm.count_tokens(model, text) if text else 0


def _requests(examples: list, mode: str, judge: str) -> list:
    config = JudgeConfig(judges=(judge,), mode=mode)  # type: ignore[arg-type]
    cands = [Candidate(ex, "gold", ex.reply, ex.strategy) for ex in examples]
    plan = Plan(config, cands, load_rubrics(None))
    return [plan.render(job) for job in plan]


def _measure(judge: str, requests: list) -> dict[str, float]:
    """Token counts of one set of requests: plain, Anthropic-cacheable, OpenAI-cacheable."""
    prompt = completion = anthropic_cached = openai_cached = 0
    templates: dict[str, str] = {}
    previous: dict[tuple, str] = {}
    prefix_tokens: dict[str, int] = {}
    for request in requests:
        system = "".join(m["content"] for m in request.messages if m["role"] == "system")
        user = "".join(m["content"] for m in request.messages if m["role"] == "user")
        text = system + user
        n = _tokens(judge, text)
        prompt += n
        dims = len((request.response_schema or {}).get("properties", {})) or 1
        completion += OUTPUT_PER_DIMENSION * (dims if dims > 1 else 1)
        head = user[:200]  # the template's opening: one constant prefix per template
        if head not in templates:
            templates[head] = user
        else:
            cut = user.rfind("\n", 0, common_prefix(templates[head], user)) + 1
            templates[head] = user[:cut]
        conv = (head, request.messages[-1]["content"][200:400])
        shared = common_prefix(previous.get(conv, ""), text)
        previous[conv] = text
        shared_tokens = _tokens(judge, text[:shared]) if shared else 0
        if shared_tokens >= MIN_CACHED:
            openai_cached += shared_tokens // OPENAI_STEP * OPENAI_STEP
    for head, prefix in templates.items():
        system = "".join(m["content"] for m in requests[0].messages if m["role"] == "system")
        prefix_tokens[head] = _tokens(judge, system + prefix)
    calls = len(requests)
    per_call = [prefix_tokens[h] for h in prefix_tokens]
    avg_prefix = sum(per_call) / len(per_call) if per_call else 0
    anthropic_cached = (avg_prefix * calls) if avg_prefix >= MIN_CACHED else 0
    writes = sum(per_call) if avg_prefix >= MIN_CACHED else 0
    return {"calls": calls, "prompt": prompt, "completion": completion,
            "anthropic_cached": max(0.0, anthropic_cached - writes),
            "anthropic_written": writes, "openai_cached": openai_cached,
            "prefix_tokens": avg_prefix}


def _costs(judge: str, sep: dict, joint: dict, scale: float) -> dict[str, float]:
    anthropic = judge.startswith("anthropic/")

    def usd(m: dict, cached: float = 0, written: float = 0, batch: bool = False) -> float:
        cost = _litellm.cost_of(judge, int(m["prompt"]), int(m["completion"]),
                                cached=int(cached), written=int(written), batch=batch)
        assert cost is not None, judge
        return cost * scale

    cached = joint["anthropic_cached"] if anthropic else joint["openai_cached"]
    written = joint["anthropic_written"] if anthropic else 0
    return {
        "separate": usd(sep), "joint": usd(joint),
        "joint_cached": usd(joint, cached, written),
        "joint_cached_batch": usd(joint, cached if anthropic else 0,
                                  written if anthropic else 0, batch=True),
        "prompt_tokens_separate": sep["prompt"] * scale,
        "prompt_tokens_joint": joint["prompt"] * scale,
        "cached_share_joint": round(cached / joint["prompt"], 3) if joint["prompt"] else 0.0,
        "constant_prefix_tokens": round(joint["prefix_tokens"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few turns: checks it runs")
    args = parser.parse_args()
    started = time.perf_counter()
    examples = load_examples()
    if args.smoke:
        examples = examples[:6]
    scale = CSCONV_TURNS / len(examples)
    per_judge: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = defaultdict(float)
    for judge in JUDGES:
        sep = _measure(judge, _requests(examples, "separate", judge))
        joint = _measure(judge, _requests(examples, "joint", judge))
        per_judge[judge] = _costs(judge, sep, joint, scale)
        for setup in ("separate", "joint", "joint_cached", "joint_cached_batch"):
            totals[setup] += per_judge[judge][setup]
    for judge, costs in per_judge.items():
        print(f"{judge}: " + ", ".join(f"{k} ${v:,.2f}" for k, v in costs.items()
                                       if not k.startswith(("prompt", "cached", "constant"))),
              file=sys.stderr)
    result = {
        "smoke": args.smoke, "sample_turns": len(examples), "turns": CSCONV_TURNS,
        "dimensions": 3, "judges": list(JUDGES),
        "per_judge": {j: {k: round(v, 2) for k, v in c.items()} for j, c in per_judge.items()},
        "setups_usd": {k: round(v, 2) for k, v in totals.items()},
        "naive_usd": round(totals["separate"], 2),
        "best_usd": round(totals["joint_cached_batch"], 2),
        "best_over_naive": round(totals["joint_cached_batch"] / totals["separate"], 4),
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    result["goals_met"] = result["best_over_naive"] <= 0.25
    print(json.dumps(result))


if __name__ == "__main__":
    main()
