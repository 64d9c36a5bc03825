"""A provider echoing the API key in its answer gets it into no file (issue 10, section 3).

The key reaches the stub in the Authorization header (loopback only); the stub then puts
it in every verdict's rationale, and a broken judge adds it to an unparseable answer too.
Nothing the run writes (judgments.jsonl, run.json, the cache and its WAL) nor what it
prints may hold the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_judge_support import examples, judge_answer, write_jsonl

from csc_harness.cli import main
from csc_harness.llm import StubReply, StubServer

KEY = "sk-test-echo-0123456789abcdef"


def echoing_judge(body: dict) -> StubReply:
    answer = json.loads(judge_answer(body))
    if "rationale" in answer:
        answer["rationale"] += f" (your key is {KEY})"
        return StubReply(json.dumps(answer))
    return StubReply(f"I cannot grade this. Authorization: Bearer {KEY}")


def every_byte(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.parametrize("verdict", ["rationale_first", "score_only"])
def test_a_key_echoed_by_the_provider_reaches_no_file(tmp_path, capsys, monkeypatch, verdict):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    candidates = write_jsonl(tmp_path / "candidates.jsonl", [
        {"item_id": ex.item_id, "model": "model-a", "reply": f"[{ex.strategy}] {ex.reply}"}
        for ex in examples(2)])
    with StubServer(echoing_judge) as stub:
        code = main(["judge", "--candidates", str(candidates), "--judge", "openai/judge",
                     "--api-base", stub.base_url, "--cache", str(tmp_path / "cache.sqlite"),
                     "--out", str(tmp_path / "out"), "--no-progress", "--verdict", verdict])
        assert stub.requests, "the stub was never asked"
    printed = capsys.readouterr()
    assert code in (0, 1), printed.err
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").open()]
    assert rows and all("***" in (r.get("raw") or "") for r in rows), \
        "the echo never reached a row"
    written = every_byte(tmp_path)
    assert KEY.encode() not in written.replace(candidates.read_bytes(), b"")
    assert KEY not in printed.out + printed.err
