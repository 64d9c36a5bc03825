"""``--max-cost`` is a budget concurrent calls cannot pass, and a stopped run used most of it.

Unit tests drive :class:`Budget` directly; the end-to-end ones judge through a loopback stub
as ``openai/gpt-4o-mini`` (priced by litellm's local map from the usage the stub reports)
at concurrency 8, the setting where the old check stopped at a third of the budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re

import pytest
from test_judge_cli import candidate_file
from test_judge_support import fake_judge, read_rows

from csc_harness.cli import main
from csc_harness.llm import Budget, BudgetExhausted, StubReply, StubServer

PRICED = "openai/gpt-4o-mini"


def test_calls_that_fit_beside_those_in_flight_start_at_once():
    async def go() -> None:
        budget = Budget(1.0)
        held = [await budget.reserve("m", 0.3) for _ in range(3)]
        assert budget.in_flight == 3 and budget.reserved == pytest.approx(0.9)
        for reservation in held:
            budget.settle(reservation, 0.1)
        assert budget.spent == pytest.approx(0.3) and budget.reserved == 0

    asyncio.run(go())


def test_a_call_waits_while_reservations_hold_what_it_needs_then_runs():
    async def go() -> None:
        budget = Budget(1.0)
        first = await budget.reserve("m", 0.8)
        waiting = asyncio.ensure_future(budget.reserve("m", 0.5))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # 0.8 reserved + 0.5 > 1.0, but 0.5 alone fits
        budget.settle(first, 0.2)
        second = await asyncio.wait_for(waiting, 1)
        assert second.amount == 0.5 and budget.spent == pytest.approx(0.2)

    asyncio.run(go())


def test_a_waiting_call_stops_the_run_once_the_settled_spend_leaves_too_little():
    async def go() -> None:
        budget = Budget(1.0)
        first = await budget.reserve("m", 0.8)
        waiting = asyncio.ensure_future(budget.reserve("m", 0.5))
        await asyncio.sleep(0.01)
        budget.settle(first, 0.7)
        with pytest.raises(BudgetExhausted, match=r"\$0\.7000 spent"):
            await asyncio.wait_for(waiting, 1)
        assert budget.stopped is not None and budget.spent <= budget.cap

    asyncio.run(go())


def test_a_released_reservation_costs_nothing():
    async def go() -> None:
        budget = Budget(1.0, spent=0.25)
        budget.release(await budget.reserve("m", 0.5))
        assert (budget.spent, budget.reserved, budget.in_flight) == (0.25, 0, 0)
        with pytest.raises(BudgetExhausted):
            await budget.reserve("m", 0.8)  # 0.25 already spent before this session

    asyncio.run(go())


def _judge(stub, tmp_path, cap: float, *extra: str) -> tuple[int, str]:
    code = main(["judge", "--candidates", str(candidate_file(tmp_path, 12, ("a", "b"))),
                 "--judge", PRICED, "--api-base", stub.base_url, "--max-tokens", "200",
                 "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "out"),
                 "--max-cost", str(cap), "--concurrency", "8", "--no-progress", *extra])
    return code


def _verbose_judge(body: dict) -> StubReply:
    """A judge whose answers are billed like real ones: ~60 completion tokens."""
    answer = fake_judge(body)
    if isinstance(answer, StubReply):
        return dataclasses.replace(answer, completion_tokens=60)
    return StubReply(answer, completion_tokens=60)


def test_a_budget_at_concurrency_8_is_used_to_at_least_80_percent_and_never_passed(
        tmp_path, capsys):
    cap = 0.004
    with StubServer(_verbose_judge) as stub:
        code = _judge(stub, tmp_path, cap)
    err = capsys.readouterr().err
    rows = read_rows(tmp_path / "out")
    spent = sum(r["cost_usd"] or 0.0 for r in rows if not r["cached"])
    assert code == 3, err
    assert 0.8 * cap <= spent <= cap
    fresh = [r for r in rows if not r["cached"]]
    assert len(rows) < 72 and len(stub.requests) == len(fresh)  # it did stop early
    run = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert run["session"]["budget"]["spent_usd"] == pytest.approx(spent, abs=1e-9)
    assert run["session"]["cost_usd"] == pytest.approx(spent, abs=1e-9)
    printed = float(re.search(r"spent \$(\d+\.\d+)", err).group(1))
    assert printed == pytest.approx(spent, abs=6e-5) and printed > 0
    assert "higher --max-cost" in err


def test_a_rerun_counts_the_folders_spend_and_continues_with_a_higher_budget(tmp_path, capsys):
    with StubServer(_verbose_judge) as stub:
        assert _judge(stub, tmp_path, 0.004) == 3
        first = len(stub.requests)
        assert _judge(stub, tmp_path, 0.004) == 3 and len(stub.requests) - first <= 1
        assert _judge(stub, tmp_path, 1.0) == 0
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 72 and len(stub.requests) == sum(not r["cached"] for r in rows)


def test_run_takes_max_cost_and_exits_3(tmp_path, capsys, monkeypatch):
    from conftest import MINI_CSCONV

    pytest.importorskip("sacrebleu")  # the generated step scores its replies
    data = tmp_path / "data.json"
    data.write_text(json.dumps(MINI_CSCONV * 1, ensure_ascii=False), encoding="utf-8")

    def answer(body: dict) -> StubReply:
        if body.get("response_format"):
            return _verbose_judge(body)
        return StubReply("[Greeting] Hello, how can I help?", completion_tokens=12)

    with StubServer(answer) as stub:
        code = main(["run", "--model", PRICED, "--judge", PRICED, "--api-base", stub.base_url,
                     "--judge-api-base", stub.base_url, "--setting", "generated",
                     "--mode", "separate", "--data", str(data), "--no-progress",
                     "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "out"),
                     "--max-cost", "0.0015"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "--max-cost" in err and "judging" in err and "Resume with: csc-harness run" in err
    rows = read_rows(tmp_path / "out" / "judge")
    judged = sum(r["cost_usd"] or 0.0 for r in rows)
    assert judged <= 0.0015
