"""The content-addressed cache: key contract, stored rows, durability, default location."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csc_harness.llm import (
    CACHE_FORMAT_VERSION,
    Client,
    Request,
    Response,
    ResponseCache,
    cache_key,
    default_cache_path,
)
from csc_harness.llm.cache import request_body

BASE = Request(
    model="openai/judge",
    messages=({"role": "system", "content": "Judge."}, {"role": "user", "content": "您好"}),
    api_base="http://127.0.0.1:8000/v1",
)


def answer(key: str = "k", **changes: object) -> Response:
    fields: dict = {
        "text": '{"score": 4}', "response_model": "judge-001", "finish_reason": "stop",
        "refusal": None, "prompt_tokens": 12, "completion_tokens": 3, "cost_usd": 0.0012,
        "latency_s": 0.25, "cached": False, "top_logprobs": [[("4", -0.1), ("5", -2.0)]],
        "key": key, "structured": "json_schema", "attempts": 2,
    }
    fields.update(changes)
    return Response(**fields)


# -- the key -----------------------------------------------------------------------------
def test_key_is_sha256_of_the_documented_canonical_json() -> None:
    body = {
        "v": CACHE_FORMAT_VERSION, "model": "openai/judge", "api_base": "http://127.0.0.1:8000/v1",
        "messages": [{"role": "system", "content": "Judge."}, {"role": "user", "content": "您好"}],
        "params": {"temperature": 0.0, "max_tokens": 1024, "stop": None, "seed": None,
                   "top_logprobs": None},
        "schema": None, "sample": 0,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert cache_key(BASE) == hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("change", [
    pytest.param({"model": "openai/other"}, id="model"),
    pytest.param({"api_base": "http://127.0.0.1:9000/v1"}, id="api_base"),
    pytest.param({"api_base": None}, id="no-api_base"),
    pytest.param({"messages": ({"role": "user", "content": "您好!"},)}, id="messages"),
    pytest.param({"temperature": 0.7}, id="temperature"),
    pytest.param({"max_tokens": 10}, id="max_tokens"),
    pytest.param({"stop": ("\n",)}, id="stop"),
    pytest.param({"seed": 1}, id="seed"),
    pytest.param({"top_logprobs": 5}, id="top_logprobs"),
    pytest.param({"response_schema": {"type": "object"}}, id="schema"),
    pytest.param({"sample": 1}, id="sample"),
])
def test_every_field_that_shapes_the_answer_changes_the_key(change: dict) -> None:
    assert cache_key(dataclasses.replace(BASE, **change)) != cache_key(BASE)


@pytest.mark.parametrize("same", [
    pytest.param({"messages": ({"content": "Judge.", "role": "system"},
                               {"content": "您好", "role": "user"})}, id="dict-order"),
    pytest.param({"api_base": "http://127.0.0.1:8000/v1/"}, id="trailing-slash"),
    pytest.param({"temperature": 0}, id="int-temperature"),
    pytest.param({"messages": [{"role": "system", "content": "Judge."},
                               {"role": "user", "content": "您好"}]}, id="list-messages"),
])
def test_equivalent_requests_share_a_key(same: dict) -> None:
    assert cache_key(dataclasses.replace(BASE, **same)) == cache_key(BASE)


def test_key_does_not_depend_on_the_api_key(tmp_path: Path) -> None:
    one = Client(cache_path=tmp_path / "a.sqlite", api_key="sk-test-one-111111")
    two = Client(cache_path=tmp_path / "b.sqlite", api_key="sk-test-two-222222")
    assert one.cache_key(BASE) == two.cache_key(BASE) == cache_key(BASE)


def test_request_normalises_lists_to_tuples() -> None:
    request = Request(model="m", messages=[{"role": "user", "content": "x"}], stop=["a"])
    assert isinstance(request.messages, tuple) and request.stop == ("a",)


# -- rows ---------------------------------------------------------------------------------
def test_put_then_get_returns_the_answer_as_a_cache_hit(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    key = cache_key(BASE)
    cache.put(key, BASE, answer(key))
    hit = cache.get(key)
    assert hit == answer(key, cached=True, latency_s=0.0, attempts=0)
    assert hit is not None and hit.top_logprobs == [[("4", -0.1), ("5", -2.0)]]


def test_a_miss_is_none(tmp_path: Path) -> None:
    assert ResponseCache(tmp_path / "c.sqlite").get("0" * 64) is None


def test_the_first_answer_for_a_key_wins(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put("k", BASE, answer(text="first"))
    cache.put("k", BASE, answer(text="second"))
    assert cache.get("k").text == "first"  # type: ignore[union-attr]
    assert len(cache) == 1


def test_a_row_keeps_the_request_body_and_original_cost_for_audits(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ResponseCache(path).put("k", BASE, answer())
    db = sqlite3.connect(path)
    response, request = db.execute("SELECT response, request FROM responses").fetchone()
    assert json.loads(request) == request_body(BASE)
    stored = json.loads(response)
    assert stored["cost_usd"] == 0.0012 and stored["latency_s"] == 0.25
    assert set(stored) == {"text", "response_model", "finish_reason", "prompt_tokens",
                           "completion_tokens", "cost_usd", "latency_s", "top_logprobs",
                           "structured", "deployment", "cached_tokens", "cache_write_tokens",
                           "batch"}


def test_get_many_returns_only_present_keys_across_chunks(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    for i in range(1200):
        cache.put(f"k{i}", BASE, answer(text=str(i)))
    found = cache.get_many([f"k{i}" for i in range(0, 1300, 2)])
    assert len(found) == 600 and found["k1198"].text == "1198"


def test_uses_wal_and_answers_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ResponseCache(path).put("k", BASE, answer())
    reopened = ResponseCache(path)
    assert reopened.get("k") is not None
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_put_is_visible_to_another_connection_before_close(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put("k", BASE, answer())
    assert sqlite3.connect(path).execute("SELECT count(*) FROM responses").fetchone()[0] == 1


def test_the_wal_is_checkpointed_off_the_writing_thread(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import csc_harness.llm._writer as writer_module

    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY_S", 0.02)
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    before = path.stat().st_size
    for i in range(50):
        cache.put(f"k{i}", BASE, answer())
    # commits only append to the WAL; the database file grows when the checkpointer runs
    deadline = time.monotonic() + 5
    while path.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.stat().st_size > before
    cache.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert len(ResponseCache(path)) == 50


def test_a_killed_process_loses_no_committed_answer(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    script = (
        "import os, signal, sys\n"
        "from csc_harness.llm import Request, Response, ResponseCache\n"
        "cache = ResponseCache(sys.argv[1])\n"
        "req = Request(model='m', messages=({'role': 'user', 'content': 'x'},))\n"
        "for i in range(20):\n"
        "    cache.put(f'k{i}', req, Response('t', None, None, None, 1, 1, None, 0.1, False,"
        " None, f'k{i}'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env, timeout=60,
                          check=False)
    assert proc.returncode == -signal.SIGKILL
    assert len(ResponseCache(path)) == 20


# -- location and modes ------------------------------------------------------------------
def test_default_path_reads_the_environment_when_called(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CSC_HARNESS_CACHE", str(tmp_path / "mine.sqlite"))
    assert default_cache_path() == tmp_path / "mine.sqlite"
    monkeypatch.setenv("CSC_HARNESS_CACHE", str(tmp_path))
    assert default_cache_path() == tmp_path / "llm.sqlite"
    monkeypatch.delenv("CSC_HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "csc-harness" / "llm.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "csc-harness" / "llm.sqlite"


def test_client_without_a_path_uses_the_default(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CSC_HARNESS_CACHE", str(tmp_path / "default.sqlite"))
    Client()
    assert (tmp_path / "default.sqlite").exists()


def test_off_mode_creates_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CSC_HARNESS_CACHE", str(tmp_path / "default.sqlite"))
    client = Client(cache_mode="off")
    assert client.cached(BASE) is None and not (tmp_path / "default.sqlite").exists()


def test_cached_and_prefetch_read_without_calling(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    key = cache_key(BASE)
    ResponseCache(path).put(key, BASE, answer(key))
    other = dataclasses.replace(BASE, sample=1)
    client = Client(cache_path=path, cache_mode="replay")
    assert client.cached(BASE) is not None and client.cached(other) is None
    found = client.prefetch([BASE, other, "not-a-key"])
    assert list(found) == [key] and found[key].cached


@pytest.mark.parametrize("option", [
    pytest.param({"cache_mode": "readwrite"}, id="cache_mode"),
    pytest.param({"structured": "xml"}, id="structured"),
])
def test_unknown_choices_are_user_errors_listing_the_valid_ones(
        option: dict, tmp_path: Path) -> None:
    from csc_harness.errors import UserError

    with pytest.raises(UserError, match="'rw'|'auto'"):
        Client(cache_path=tmp_path / "c.sqlite", **option)
