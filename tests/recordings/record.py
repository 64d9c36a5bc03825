"""Regenerate ``judge_cache.sqlite``: recorded judge answers for ``test_judge_recorded.py``.

    python tests/recordings/record.py

Runs every configuration of ``RECORDED_RUNS`` (tests/test_judge_support.py) over
``candidates.jsonl`` through the real runner and the real cache writer (``Client`` in ``rw``
mode), against a loopback stub that answers the way OpenAI models do: JSON verdicts with
English rationales, the dated model id, token usage, logprobs where asked. A few answers are
deliberately imperfect, as real ones are: gpt-4.1-nano answers the generic English reply in
prose ("Score: 2") and gives the generic Chinese reply an off-scale 6.

Requests are made with api_base None; ``OPENAI_BASE_URL`` routes them to the stub, so the
cache keys hold no port and replay needs no server. The database stores request and
response bodies only: no headers, no key (the key below is a placeholder the stub ignores).
Re-run this after editing a template: the tests fail with a replay-miss message until then.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_judge_support import (
    RECORDED_CACHE,
    RECORDED_CANDIDATES,
    RECORDED_RUNS,
    judge_answer,
    replies_in,
    schema_of,
)

from csc_harness.judge import JudgeConfig, load_candidates, run_judgments
from csc_harness.llm import Client, StubReply, StubServer

DATED = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14"}
GENERIC_EN, GENERIC_ZH = "Please hold.", "好的，请稍等。"


def _logprob_answer(reply: str) -> StubReply:
    """A compact score-only answer with top logprobs at the score token (1-10 scale)."""
    if reply in (GENERIC_EN, GENERIC_ZH):
        score, alternatives = "3", [("3", 0.5), ("4", 0.3), ("2", 0.2)]
    else:
        score, alternatives = "10", [("10", 0.7), ("9", 0.2), ("8", 0.1)]
    tokens = [[('{"', 0.0)], [("score", 0.0)], [('":', 0.0)],
              [(t, math.log(p)) for t, p in alternatives], [("}", 0.0)]]
    return StubReply('{"score":' + score + "}", logprobs=tokens)


def respond(body: dict) -> StubReply:
    model = body["model"]
    reply = replies_in(body).get("", "")
    if body.get("logprobs"):
        answer = _logprob_answer(reply)
    elif model == "gpt-4.1-nano" and reply == GENERIC_EN:
        answer = StubReply("The agent only asks the customer to wait without saying why or "
                           "for how long, which does little for the customer.\n\nScore: 2")
    elif model == "gpt-4.1-nano" and reply == GENERIC_ZH and "score" in schema_of(body).get(
            "properties", {}):
        answer = StubReply(json.dumps({"rationale": "Generic holding reply.", "score": 6}))
    else:
        answer = StubReply(judge_answer(body))
    return StubReply(answer.text, model=DATED.get(model, model), logprobs=answer.logprobs)


async def record(stub: StubServer, out_root: Path) -> None:
    candidates = load_candidates([RECORDED_CANDIDATES])
    async with Client(cache_path=RECORDED_CACHE, cache_mode="rw", concurrency=4) as client:
        for name, options in RECORDED_RUNS.items():
            result = await run_judgments(JudgeConfig(**options), candidates, out_root / name,
                                         client=client, progress=False)
            print(f"{name}: {result.summary['judgments']} judgments, exit {result.exit_code}")


def main() -> None:
    RECORDED_CACHE.unlink(missing_ok=True)
    with StubServer(respond) as stub, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(OPENAI_BASE_URL=stub.base_url, OPENAI_API_KEY="sk-placeholder-unused",
                          LITELLM_LOCAL_MODEL_COST_MAP="True")
        asyncio.run(record(stub, Path(tmp)))
        if stub.errors:
            raise SystemExit(f"stub errors: {stub.errors}")
    with sqlite3.connect(RECORDED_CACHE) as db:  # one self-contained file, no -wal/-shm
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    with sqlite3.connect(RECORDED_CACHE) as db:
        db.execute("VACUUM")
        print(f"{RECORDED_CACHE}: {db.execute('SELECT count(*) FROM responses').fetchone()[0]} "
              "answers")


if __name__ == "__main__":
    main()
