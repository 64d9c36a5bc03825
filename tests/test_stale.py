"""Never serve stale results: changed input is judged anew, other endpoints are never
reused, one writer per output folder."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from test_judge_support import candidates, fake_judge, read_rows, run

from csc_harness import contract
from csc_harness.errors import UserError
from csc_harness.judge import JudgeConfig, run_judgments
from csc_harness.llm import Client, StubServer
from csc_harness.lock import folder_lock
from csc_harness.pipeline import RunOptions, _lm_eval_cache_name


def config(stub, **kwargs) -> JudgeConfig:
    kwargs.setdefault("judges", ("openai/judge",))
    return JudgeConfig(api_base=stub.base_url, **kwargs)


def test_edited_replies_are_judged_anew_and_old_rows_superseded(tmp_path):
    cands = candidates(2)
    with StubServer(fake_judge) as stub:
        run(config(stub), cands, tmp_path / "out")
        first = read_rows(tmp_path / "out")
        edited = [dataclasses.replace(c, reply=c.reply + " (edited)") if i == 0 else c
                  for i, c in enumerate(cands)]
        calls_before = len(stub.requests)
        result = run(config(stub), edited, tmp_path / "out")
        calls = len(stub.requests) - calls_before
    rows = read_rows(tmp_path / "out")
    assert calls == 3 and result.superseded == 3 and result.exit_code == 0
    assert len(rows) == len(first)
    assert sum(r["reply"].endswith("(edited)") for r in rows) == 3
    old = (tmp_path / "out" / contract.SUPERSEDED_FILE).read_text().splitlines()
    assert len(old) == 3 and not any("(edited)" in line for line in old)
    run_json = json.loads((tmp_path / "out" / contract.RUN_FILE).read_text())
    assert run_json["session"]["superseded_rows"] == 3


def test_a_changed_judge_setting_is_judged_anew(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub), candidates(1), tmp_path / "out")
        before = len(stub.requests)
        run(config(stub, max_tokens=77), candidates(1), tmp_path / "out")
        assert len(stub.requests) - before == 2 * 3


def test_rerun_with_the_same_input_calls_nothing(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub), candidates(2), tmp_path / "out")
        before = len(stub.requests)
        result = run(config(stub), candidates(2), tmp_path / "out")
        assert len(stub.requests) == before and result.superseded == 0


def test_lm_eval_replies_are_cached_per_endpoint():
    opts = RunOptions(out="x", embedded_names=("openai/smollm2-135m-instruct",))
    one = _lm_eval_cache_name("hosted_vllm/m", "http://127.0.0.1:8000/v1", opts)
    other = _lm_eval_cache_name("hosted_vllm/m", "http://127.0.0.1:9000/v1", opts)
    assert one != other and one.startswith("m-")
    embedded = [_lm_eval_cache_name("openai/smollm2-135m-instruct", f"http://127.0.0.1:{p}/v1",
                                    opts) for p in (5000, 6000)]
    assert embedded[0] == embedded[1]


def test_a_second_writer_of_one_folder_fails_with_one_line(tmp_path):
    out = tmp_path / "out"

    async def go(stub):
        async with Client(cache_path=tmp_path / "c.sqlite") as client:
            return await run_judgments(config(stub), candidates(1), out, client=client)

    with StubServer(fake_judge) as stub, folder_lock(out):
        with pytest.raises(UserError) as failure:
            asyncio.run(go(stub))
        assert not stub.requests
    assert "another csc-harness process" in str(failure.value)
    assert "\n" not in str(failure.value)
    assert not (out / contract.JUDGMENTS_FILE).exists()


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    with folder_lock(tmp_path / "out"):
        pass
    with folder_lock(tmp_path / "out"):
        pass


def test_generated_replies_are_never_reused_from_another_endpoint(tmp_path):
    from csc_harness.rollout import CandidateStore, answer_row

    source = {"model": "openai/m", "endpoint": "http://127.0.0.1:1/v1", "max_tokens": 200,
              "stop": [], "setting": "reference"}
    store = CandidateStore(tmp_path, "openai/m", "reference", source)
    store.append(answer_row("z1:1", "openai/m", "[GT] hi", "reference"))
    CandidateStore(tmp_path, "openai/m", "reference", source)  # same source: reused
    moved = {**source, "endpoint": "http://127.0.0.1:2/v1"}
    with pytest.raises(UserError, match="endpoint"):
        CandidateStore(tmp_path, "openai/m", "reference", moved)
