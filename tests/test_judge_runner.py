"""The runner against a loopback stub: rows, retries, errors, resume, budget, panels, pairwise."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections import Counter

import pytest
from scipy import stats
from test_judge_support import (
    candidates,
    fake_judge,
    judge_answer,
    read_rows,
    replies_in,
    run,
    schema_of,
)

from csc_harness.errors import CacheMiss, ProviderError
from csc_harness.judge import PAIRWISE_FIELDS, ROW_FIELDS, JudgeConfig, estimate_judgments, row_key
from csc_harness.llm import Client, StubReply, StubServer


def config(stub, **kwargs) -> JudgeConfig:
    kwargs.setdefault("judges", ("openai/judge",))
    return JudgeConfig(api_base=stub.base_url, **kwargs)


def test_rows_carry_exactly_the_contract_fields(tmp_path):
    with StubServer(fake_judge) as stub:
        result = run(config(stub), candidates(3), tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert result.exit_code == 0 and len(rows) == 3 * 2 * 3
    for row in rows:
        assert tuple(row) == ROW_FIELDS
        assert row["status"] == "ok" and row["score"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert (row["scale_min"], row["scale_max"]) == (1, 5)
        assert re.fullmatch(r"\w+@\d+#[0-9a-f]{10}", row["prompt_id"])
        assert row["kind"] == "absolute" and row["mode"] == "separate"
        assert row["variant"] == "default" and row["reference_guided"] is False
        assert row["response_model"] == "judge" and row["cached"] is False
        assert row["weighted_score"] is None and row["embedded"] is False
        assert row["rationale"] and row["raw"].startswith("{")
        assert isinstance(row["prompt_tokens"], int) and row["latency_s"] >= 0
    model_b = next(r for r in rows if r["model"] == "model-b")
    assert model_b["predicted_strategy"] is None
    assert len({row_key(r) for r in rows}) == len(rows)


def test_rows_load_in_the_analysis_module(tmp_path):
    rows_module = pytest.importorskip("csc_harness.analysis.rows")
    with StubServer(fake_judge) as stub:
        run(config(stub, judges=("openai/judge-a", "openai/judge-b")), candidates(2),
            tmp_path / "abs")
        run(config(stub, pairwise=True), candidates(2), tmp_path / "pair")
    loaded = rows_module.load_judgments([tmp_path / "abs", tmp_path / "pair"])
    assert len(loaded.absolute) == 2 * 2 * 3 * 2 and len(loaded.pairwise) == 2 * 3 * 2


def test_run_json_records_config_versions_and_totals_but_no_key(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub), candidates(2), tmp_path / "out")
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["status"] == "complete" and info["remaining"] == 0
    assert info["config"]["judges"] == ["openai/judge"]
    assert set(info["versions"]) == {"csc_harness", "litellm", "python"}
    assert info["totals"]["judgments"] == 12
    assert info["totals"]["statuses"]["openai/judge"]["empathy"] == {
        "ok": 4, "invalid": 0, "refused": 0, "error": 0}
    assert info["session"]["calls"] == 12 and info["session"]["cache_hits"] == 0
    assert "api_key" not in json.dumps(info)


def test_joint_mode_makes_one_call_per_reply_and_one_row_per_dimension(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub, mode="joint"), candidates(2), tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert len(stub.requests) == 4 and len(rows) == 12
    for group in _by(rows, "item_id", "model").values():
        assert [r["dimension"] for r in group] == [
            "strategy_adherence", "empathy", "problem_resolution"]
        assert len({r["raw"] for r in group}) == 1 and {r["mode"] for r in group} == {"joint"}
        assert group[0]["prompt_tokens"] > 0 and group[1]["prompt_tokens"] == 0
        assert group[2]["completion_tokens"] == 0 and group[1]["latency_s"] == 0.0


def test_retries_on_429_500_and_timeout_end_in_an_ok_row(tmp_path):
    script = [StubReply(status=429, headers={"Retry-After": "0"}), StubReply(status=500),
              StubReply(delay=3.0), judge_answer_for_empathy()]
    with StubServer(script) as stub:
        result = run(config(stub, dimensions=("empathy",)), candidates(1)[:1], tmp_path / "out",
                     max_tries=4, timeout=0.5)
    (row,) = read_rows(tmp_path / "out")
    assert row["status"] == "ok" and row["score"] == 4.0
    assert len(stub.requests) == 4 and result.exit_code == 0
    session = json.loads((tmp_path / "out" / "run.json").read_text())["session"]
    assert session["retries"] == 3 and session["attempts"] == 4


def judge_answer_for_empathy() -> str:
    return '{"rationale": "Acknowledges the worry.", "score": 4}'


def test_failure_after_retries_is_an_error_row_that_a_rerun_retries(tmp_path):
    cands = candidates(1)[:1]
    with StubServer([StubReply(status=500), StubReply(status=503)]) as stub:
        result = run(config(stub, dimensions=("empathy",)), cands, tmp_path / "out", max_tries=2)
    (row,) = read_rows(tmp_path / "out")
    assert (row["status"], row["score"]) == ("error", None)
    assert "failed after 2 tries" in row["raw"] and "503" in row["raw"]
    assert result.exit_code == 1 and "re-run the same command" in result.message
    with StubServer(fake_judge) as stub:
        result = run(config(stub, dimensions=("empathy",)), cands, tmp_path / "out")
    (row,) = read_rows(tmp_path / "out")
    assert row["status"] == "ok" and result.exit_code == 0 and len(stub.requests) == 1


def test_a_failure_no_retry_can_fix_stops_the_run(tmp_path):
    with StubServer([StubReply("invalid api key", status=401)]) as stub, \
            pytest.raises(ProviderError, match="401.*check the API key.*resume"):
        run(config(stub), candidates(2), tmp_path / "out", concurrency=1)
    assert len(stub.requests) == 1
    assert json.loads((tmp_path / "out" / "run.json").read_text())["stop_reason"] == "provider"


@pytest.mark.parametrize("answer, status, reason", [
    pytest.param("It is a reasonably kind reply, I'd say a four.", "invalid", "no verdict found",
                 id="prose"),
    pytest.param('{"rationale": "great", "score": 9}', "invalid", "score 9 is outside",
                 id="out-of-range"),
    pytest.param(StubReply(refusal="I can't assist with that."), "refused", "provider refusal",
                 id="provider-refusal"),
])
def test_unusable_answers_are_reported_never_scored(tmp_path, answer, status, reason):
    with StubServer(lambda body: answer) as stub:
        result = run(config(stub, dimensions=("empathy",)), candidates(1), tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert {(r["status"], r["score"]) for r in rows} == {(status, None)}
    assert all(r["raw"] for r in rows)
    reasons = json.loads((tmp_path / "out" / "run.json").read_text())["session"]["not_ok_reasons"]
    assert any(k.startswith(reason.split(":")[0]) for k in reasons), reasons
    assert result.summary["statuses"]["openai/judge"]["empathy"][status] == 2


def test_replay_mode_fails_on_a_miss_with_a_clear_message(tmp_path):
    with pytest.raises(CacheMiss, match=r"replay mode forbids provider calls.*item '"):
        run(JudgeConfig(judges=("openai/judge",), api_base="http://127.0.0.1:9/v1"),
            candidates(1), tmp_path / "out", cache_mode="replay")
    assert json.loads((tmp_path / "out" / "run.json").read_text())["stop_reason"] == "replay_miss"


def test_replay_mode_reproduces_a_recorded_run_without_calls(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with StubServer(fake_judge) as stub:
        cfg = config(stub)
        run(cfg, candidates(2), tmp_path / "live", cache_path=cache)
        calls = len(stub.requests)
        run(cfg, candidates(2), tmp_path / "replay", cache_path=cache, cache_mode="replay")
        assert len(stub.requests) == calls
    live, replay = read_rows(tmp_path / "live"), read_rows(tmp_path / "replay")
    strip = ("latency_s", "cached")  # the only fields a replay may change

    def keyed(rows):
        return {row_key(r): {k: v for k, v in r.items() if k not in strip} for r in rows}

    assert keyed(live) == keyed(replay) and len(replay) == 12
    assert all(r["cached"] for r in replay)


def test_api_key_never_reaches_any_written_file(tmp_path, monkeypatch):
    key = "sk-test-" + "Zq7" * 12
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def leaky(body):  # a provider error that echoes the key back
        if "Empathy" in body["messages"][-1]["content"]:
            return StubReply(f"bad request from key {key}", status=500)
        return fake_judge(body)

    with StubServer(leaky) as stub:
        run(config(stub), candidates(2), tmp_path / "out", cache_path=tmp_path / "c.sqlite",
            max_tries=1)
    assert any(r["status"] == "error" for r in read_rows(tmp_path / "out"))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
            assert key[:20].encode() not in path.read_bytes(), path


def estimate(cfg, cands, out, cache):
    async def go():
        async with Client(cache_path=cache) as client:
            return estimate_judgments(cfg, cands, out, client=client)

    return asyncio.run(go())


def test_dry_run_makes_no_requests_and_counts_what_is_left(tmp_path):
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    with StubServer([]) as stub:  # any request would be an error in stub.errors
        cfg = config(stub, judges=("openai/gpt-4o-mini",))
        first = estimate(cfg, candidates(2), out, cache)
        assert stub.requests == [] and not out.exists()
    assert (first.calls, first.cached, first.done, first.judgments) == (12, 0, 0, 12)
    assert first.prompt_tokens > 12 * 300 and first.completion_tokens == 12 * 432
    assert first.cost_usd is not None and 0 < first.cost_usd < 0.05
    with StubServer(fake_judge) as stub:
        cfg = config(stub, judges=("openai/gpt-4o-mini",))
        run(config(stub, judges=("openai/gpt-4o-mini",), dimensions=("empathy",)),
            candidates(2), out, cache_path=cache)
        calls = len(stub.requests)
        second = estimate(cfg, candidates(2), out, cache)
        assert len(stub.requests) == calls
    assert (second.calls, second.done, second.cached) == (8, 4, 0)
    unknown = JudgeConfig(judges=("openai/no-such-model",), api_base="http://127.0.0.1:9/v1")
    third = estimate(unknown, candidates(1), tmp_path / "o2", cache)
    assert third.cost_usd is None and "unknown" in third.lines()[-1]


def test_dry_run_counts_cached_answers_as_free(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with StubServer(fake_judge) as stub:
        cfg = config(stub)
        run(cfg, candidates(1), tmp_path / "first", cache_path=cache)
        fresh = estimate(cfg, candidates(1), tmp_path / "second", cache)
    assert (fresh.calls, fresh.cached, fresh.done) == (0, 6, 0)


def test_max_cost_stops_before_the_budget_and_a_rerun_resumes(tmp_path):
    cands = candidates(4)
    with StubServer(fake_judge) as stub:
        cfg = config(stub, judges=("openai/gpt-4o-mini",), max_cost=0.003)
        result = run(cfg, cands, tmp_path / "out", concurrency=1)
        first = read_rows(tmp_path / "out")
        assert result.exit_code == 3 and result.stop == "budget"
        assert "higher --max-cost" in result.message
        assert 0 < len(first) < 24 and result.remaining == 24 - len(first)
        assert sum(r["cost_usd"] for r in first) <= 0.003
        calls = len(stub.requests)
        cfg = config(stub, judges=("openai/gpt-4o-mini",), max_cost=1.0)
        result = run(cfg, cands, tmp_path / "out", concurrency=1)
        assert result.exit_code == 0 and len(stub.requests) - calls == 24 - len(first)
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 24 and len({row_key(r) for r in rows}) == 24


def test_resume_skips_done_rows_cuts_a_torn_line_and_calls_nothing_for_cached_work(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    with StubServer(fake_judge) as stub:
        run(config(stub), candidates(3), out, cache_path=cache)
        full = (out / "judgments.jsonl").read_text()
        lines = full.splitlines(keepends=True)
        (out / "judgments.jsonl").write_text("".join(lines[:-5]) + lines[-5][:40])
        calls = len(stub.requests)
        result = run(config(stub), candidates(3), out, cache_path=cache)
        assert len(stub.requests) == calls, "cached work must not be asked again"
    rows = read_rows(out)
    assert len(rows) == 18 and len({row_key(r) for r in rows}) == 18
    assert result.exit_code == 0
    info = json.loads((out / "run.json").read_text())
    assert info["session"]["torn_bytes_cut"] == 40 and info["session"]["cache_hits"] == 5


def test_a_complete_folder_is_not_redone(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub), candidates(2), tmp_path / "out", cache_mode="off")
        calls = len(stub.requests)
        result = run(config(stub), candidates(2), tmp_path / "out", cache_mode="off")
        assert len(stub.requests) == calls and result.exit_code == 0
    assert len(read_rows(tmp_path / "out")) == 12


def test_samples_are_separate_calls_at_temperature_one(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub, dimensions=("empathy",), samples=3), candidates(1)[:1], tmp_path / "o")
    rows = read_rows(tmp_path / "o")
    assert sorted(r["sample"] for r in rows) == [0, 1, 2]
    assert len(stub.requests) == 3 and {b["temperature"] for b in stub.requests} == {1.0}


def test_panel_summary_agreement_matches_scipy(tmp_path):
    with StubServer(fake_judge) as stub:
        result = run(config(stub, judges=("openai/judge-a", "openai/judge-b")),
                     candidates(4, models=("m1", "m2", "m3")), tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    scores = {(r["judge"], r["model"], r["item_id"]): r["score"] for r in rows
              if r["dimension"] == "empathy"}
    keys = sorted({k[1:] for k in scores})
    a = [scores[("openai/judge-a", *k)] for k in keys]
    b = [scores[("openai/judge-b", *k)] for k in keys]
    agreement = result.summary["agreement"]["empathy"]["openai/judge-a | openai/judge-b"]
    assert agreement["n"] == len(keys) == 12
    assert agreement["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-4)
    assert agreement["exact"] == pytest.approx(sum(x == y for x, y in zip(a, b)) / 12, abs=1e-4)
    assert agreement["within_1"] == 1.0  # judge-b is judge-a plus one, capped at 5
    panel = result.summary["panel"]["empathy"]
    assert panel["mean"] == pytest.approx(sum(a + b) / 24, abs=1e-4)
    assert set(panel["models"]) == {"m1", "m2", "m3"}


def test_pairwise_judges_both_orders_and_reports_inconsistency(tmp_path):
    first = candidates(2)[:2]  # model-a's and model-b's replies to the first item
    first_item = first[0].item.item_id

    def biased(body):  # always prefers position A on the first item: order-inconsistent
        shown = set(replies_in(body).values())
        if shown == {c.reply for c in first} and "winner" in schema_of(body)["properties"]:
            return json.dumps({"rationale": "A reads better.", "winner": "A"})
        return judge_answer(body)

    with StubServer(biased) as stub:
        result = run(config(stub, pairwise=True), candidates(2), tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert len(rows) == len(stub.requests) == 2 * 3 * 2
    assert all(tuple(r) == PAIRWISE_FIELDS for r in rows)
    assert Counter(r["order"] for r in rows) == {"ab": 6, "ba": 6}
    assert {(r["model_a"], r["model_b"], r["model"]) for r in rows} == {
        ("model-a", "model-b", "model-a vs model-b")}
    assert {r["score"] for r in rows} == {None} and {r["reply"] for r in rows} == {None}
    second = [r for r in rows if r["item_id"] != first_item]
    assert {r["winner"] for r in second} == {"a"}, "longer reply (model-a) wins in both orders"
    biased_rows = {r["order"]: r["winner"] for r in rows
                   if r["item_id"] == first_item and r["dimension"] == "empathy"}
    assert biased_rows == {"ab": "a", "ba": "b"}
    tally = result.summary["pairwise"]["openai/judge"]["empathy"]
    assert (tally["pairs"], tally["wins_a"], tally["ties"], tally["inconsistent"]) == (2, 1, 1, 1)
    assert tally["inconsistency_rate"] == 0.5 and tally["win_rate_a"] == 0.75


@pytest.mark.parametrize(("options", "pairs"), [
    pytest.param({}, {("a", "b"), ("a", "c")}, id="baseline-first-model"),
    pytest.param({"baseline": "c"}, {("a", "c"), ("b", "c")}, id="baseline-named"),
    pytest.param({"all_pairs": True}, {("a", "b"), ("a", "c"), ("b", "c")}, id="all-pairs"),
])
def test_pairwise_with_three_models_compares_the_planned_pairs(options, pairs):
    from csc_harness.judge.plan import Plan
    from csc_harness.judge.rubrics import load_rubrics

    config = JudgeConfig(judges=("openai/j",), pairwise=True, **options)
    plan = Plan(config, candidates(1, models=("a", "b", "c")), load_rubrics(None))
    assert {job.pair for job in plan} == pairs
    assert len(plan) == 2 * len(pairs) * len(plan.groups) and plan.unpaired == 0


def test_an_unknown_pairwise_baseline_is_a_user_error():
    from csc_harness.errors import UserError
    from csc_harness.judge.plan import Plan
    from csc_harness.judge.rubrics import load_rubrics

    with pytest.raises(UserError, match="--baseline 'z' is not a candidate model"):
        Plan(JudgeConfig(judges=("openai/j",), pairwise=True, baseline="z"),
             candidates(1, models=("a", "b", "c")), load_rubrics(None))


def test_weighted_scores_come_from_the_score_tokens_logprobs(tmp_path):
    answer = '{"score": 4}'
    tokens = [[("{\"", 0.0)], [("score", 0.0)], [("\":", 0.0)], [(" ", 0.0)],
              [("4", -0.5108256), ("5", -1.2039728), ("x", -3.0)], [("}", 0.0)]]
    with StubServer(lambda body: StubReply(answer, logprobs=tokens)) as stub:
        run(config(stub, dimensions=("empathy",), verdict="score_only", logprobs=5),
            candidates(1), tmp_path / "out")
        assert stub.requests[0]["top_logprobs"] == 5 and stub.requests[0]["logprobs"] is True
    rows = read_rows(tmp_path / "out")
    assert {r["variant"] for r in rows} == {"default+score_only"}
    expected = (4 * 0.6 + 5 * 0.3) / 0.9
    assert [r["weighted_score"] for r in rows] == pytest.approx([expected, expected], abs=1e-4)


def test_reference_guided_and_embedded_flags_reach_the_rows(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub, dimensions=("strategy_adherence",), reference_guided=True,
                   embedded_models=("model-b",)), candidates(1), tmp_path / "out")
        assert candidates(1)[0].item.reply in stub.requests[0]["messages"][-1]["content"]
    rows = read_rows(tmp_path / "out")
    assert {r["reference_guided"] for r in rows} == {True}
    assert {r["model"]: r["embedded"] for r in rows} == {"model-a": False, "model-b": True}


def test_the_cache_file_holds_request_bodies_but_no_headers(tmp_path):
    with StubServer(fake_judge) as stub:
        run(config(stub, dimensions=("empathy",)), candidates(1), tmp_path / "out",
            cache_path=tmp_path / "c.sqlite")
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        stored = db.execute("SELECT request, response FROM responses").fetchall()
    assert len(stored) == 2
    assert all("authorization" not in (req + resp).lower() for req, resp in stored)


def _by(rows, *fields):
    groups: dict = {}
    for row in rows:
        groups.setdefault(tuple(row[f] for f in fields), []).append(row)
    return groups


def test_max_cost_with_an_unpriced_judge_is_refused_up_front(tmp_path):
    from csc_harness.errors import UserError

    with StubServer([]) as stub:
        with pytest.raises(UserError, match="--max-cost needs prices.*'openai/judge'"):
            run(config(stub, max_cost=1.0), candidates(1), tmp_path / "out")
        assert stub.requests == []


def test_logprobs_a_server_does_not_return_are_said_not_dropped(tmp_path):
    with StubServer(fake_judge) as stub:  # the stub sends no logprobs unless scripted to
        result = run(config(stub, logprobs=5), candidates(1), tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert all(r["weighted_score"] is None for r in rows)
    [note] = result.lines
    assert "--logprobs 5" in note and "6 of 6" in note
    assert json.loads((tmp_path / "out" / "run.json").read_text())["notes"] == [note]
    from csc_harness.analysis import leaderboard, load_judgments

    assert note in leaderboard(load_judgments([tmp_path / "out"]), rounds=20)["notes"]
