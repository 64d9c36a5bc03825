"""A dead endpoint ends a run with one clear line, fast: no tracebacks, no retry storm.

The commands run in a subprocess, as a user runs them: "Task exception was never
retrieved" is printed by asyncio when an orphaned task is garbage-collected, which an
in-process test would not see. The endpoint is a loopback port that was bound and closed,
so every connection is refused at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_judge_support import examples, write_jsonl

from csc_harness.llm import DEAD_AFTER, Client, EndpointUnreachable, Request

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": path}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "csc_harness.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - started


def _assert_one_clear_error(proc: subprocess.CompletedProcess, command: str, url: str) -> None:
    err = proc.stderr
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Task exception was never retrieved" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"csc-harness {command}: error: ")
    assert url in lines[0] and "cannot reach" in lines[0]
    assert "HTTP 500" not in lines[0] and "connection failed" in lines[0]
    assert f"csc-harness {command} " in lines[0].split("resume", 1)[1]  # the resume command


def test_judge_against_a_dead_endpoint_stops_with_one_line(tmp_path, dead_url):
    candidates = write_jsonl(tmp_path / "candidates.jsonl", [
        {"item_id": ex.item_id, "model": m, "reply": ex.reply}
        for ex in examples(12) for m in ("model-a", "model-b")])
    out = tmp_path / "out"
    proc, seconds = _cli("judge", "--candidates", str(candidates), "--judge", "openai/judge",
                         "--api-base", dead_url, "--cache", str(tmp_path / "c.sqlite"),
                         "--out", str(out), "--no-progress", cwd=tmp_path)
    _assert_one_clear_error(proc, "judge", dead_url)
    assert "judging" in proc.stderr
    # 72 calls planned; the endpoint is given up on after the first wave, not 72 x 6 tries
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["stop_reason"] == "provider" and run["remaining"] > 0
    assert run["session"]["attempts"] <= 2 * 8 and seconds < 60


def test_generate_against_a_dead_endpoint_stops_with_one_line(tmp_path, dead_url):
    proc, seconds = _cli("generate", "--model", "openai/cand", "--api-base", dead_url,
                         "--limit", "4", "--cache", str(tmp_path / "c.sqlite"),
                         "--out", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    _assert_one_clear_error(proc, "generate", dead_url)
    assert "generating replies" in proc.stderr and seconds < 60


def test_connection_refused_is_a_connection_failure_not_http_500(dead_url, tmp_path):
    import asyncio

    async def go() -> None:
        async with Client(cache_mode="off", concurrency=1, backoff_base=0.01) as client:
            request = Request(model="openai/x", messages=({"role": "user", "content": "hi"},),
                              api_base=dead_url)
            with pytest.raises(EndpointUnreachable) as caught:
                await client.complete(request)
            assert client.stats.attempts == DEAD_AFTER
            assert "connection failed" in str(caught.value)
            assert "HTTP 500" not in str(caught.value)
            with pytest.raises(EndpointUnreachable):  # later calls fail at once
                await client.complete(Request(model="openai/x", messages=(
                    {"role": "user", "content": "again"},), api_base=dead_url))
            assert client.stats.attempts == DEAD_AFTER

    asyncio.run(go())
