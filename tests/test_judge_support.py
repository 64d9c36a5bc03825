"""Shared helpers for the judge tests (no tests here): candidates, a realistic fake judge.

The fake judge reads what a real one would (the request's response schema and the quoted
reply) and answers like one: a short English rationale and a score that depends only on
the reply, the dimension and the judge, so runs are deterministic and judges differ.
``tests/recordings/record.py`` uses the same fake to write the recorded cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from csc_harness.data import load_examples
from csc_harness.judge import Candidate, JudgeConfig, run_judgments
from csc_harness.llm import Client, StubReply
from csc_harness.quoting import NONCE

REPLY_BLOCK = re.compile(rf"<reply(?:-([AB]))?-({NONCE})>\n(.*?)\n</reply(?:-[AB])?-\2>",
                         re.DOTALL)


def examples(n: int = 4) -> list:
    """The first ``n`` supporter turns of the bundled sample, alternating zh and en."""
    all_examples = load_examples()
    zh = [e for e in all_examples if e.language == "zh"]
    en = [e for e in all_examples if e.language == "en"]
    mixed = [e for pair in zip(zh, en) for e in pair]
    return mixed[:n]


def candidates(n: int = 4, models: tuple[str, ...] = ("model-a", "model-b")) -> list[Candidate]:
    """Model-specific replies (model-b's are shorter) to the first ``n`` items."""
    out = []
    for ex in examples(n):
        for i, model in enumerate(models):
            reply = ex.reply if i == 0 else ex.reply[: max(4, len(ex.reply) // 2)]
            out.append(Candidate(ex, model, reply, ex.strategy if i == 0 else None))
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def read_rows(out: Path) -> list[dict]:
    path = out / "judgments.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def schema_of(body: dict) -> dict:
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}


def _score(text: str, dim: str, judge: str, scale_max: int = 5) -> int:
    digest = hashlib.sha256(f"{text}|{dim}".encode()).digest()
    base = 1 + digest[0] % scale_max
    return min(scale_max, base + 1) if judge.endswith("-b") else base  # judge-b: one higher


def replies_in(body: dict) -> dict[str, str]:
    """Quoted replies of the request's user message: ``{"": text}`` or ``{"A": .., "B": ..}``."""
    prompt = body["messages"][-1]["content"]
    return {m.group(1) or "": m.group(3) for m in REPLY_BLOCK.finditer(prompt)}


def judge_answer(body: dict) -> str:
    """A realistic verdict for any request the runner sends."""
    props = schema_of(body).get("properties", {})
    judge = str(body.get("model", ""))
    replies = replies_in(body)
    if "winner" in props:
        a, b = replies["A"], replies["B"]
        winner = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"
        return json.dumps({"rationale": f"Reply {winner} addresses the customer's request "
                           "more completely.", "winner": winner})
    top = max((p.get("enum") or [5])[-1] for p in _score_props(props))
    reply = replies.get("", "")
    if "score" in props:
        dim = "single"
        return json.dumps({"rationale": "The reply acknowledges the customer and moves the "
                           "issue forward, though it could be more specific.",
                           "score": _score(reply, dim, judge, top)})
    out: dict[str, Any] = {}
    for dim, prop in props.items():
        score = _score(reply, dim, judge, top)
        out[dim] = ({"rationale": f"On {dim.replace('_', ' ')}, the reply is adequate.",
                     "score": score} if prop.get("type") == "object" else score)
    return json.dumps(out)


def _score_props(props: dict) -> list[dict]:
    if "score" in props:
        return [props["score"]]
    return [p.get("properties", {}).get("score", p) for p in props.values()]


def fake_judge(body: dict) -> StubReply:
    return StubReply(judge_answer(body))


def run(config: JudgeConfig, cands: list[Candidate], out: Path, **client_args: Any):
    """Run synchronously with a fresh Client (one event loop per run)."""
    client_args.setdefault("cache_path", out.parent / f"{out.name}-cache.sqlite")
    client_args.setdefault("backoff_base", 0.01)

    async def go():
        async with Client(**client_args) as client:
            return await run_judgments(config, cands, out, client=client, progress=False)

    return asyncio.run(go())


# -- recorded provider answers (tests/recordings, written by record.py) -------------------

RECORDINGS = Path(__file__).resolve().parent / "recordings"
RECORDED_CACHE = RECORDINGS / "judge_cache.sqlite"
RECORDED_CANDIDATES = RECORDINGS / "candidates.jsonl"
RECORDED_JUDGES = ("openai/gpt-4o-mini", "openai/gpt-4.1-nano")
RECORDED_RUNS: dict[str, dict[str, Any]] = {
    "separate": {"judges": RECORDED_JUDGES},
    "joint_reference": {"judges": RECORDED_JUDGES[:1], "mode": "joint",
                        "reference_guided": True},
    "pairwise": {"judges": RECORDED_JUDGES[:1], "pairwise": True},
    "scale10_logprobs": {"judges": RECORDED_JUDGES[:1], "variant": "scale10",
                         "verdict": "score_only", "logprobs": 5, "dimensions": ("empathy",)},
}
"""Configurations recorded with api_base None (the recorder routes openai/ to a stub through
OPENAI_BASE_URL), so replaying needs no server and no port."""
