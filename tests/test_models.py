"""--models: a litellm model_list file, its checks, its cache key, and litellm's Router over
several deployments (one of which dies mid-run)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
import yaml
from test_judge_support import candidates, fake_judge, read_rows, run

from csc_harness.cli import main
from csc_harness.errors import UserError
from csc_harness.judge import JudgeConfig
from csc_harness.llm import Client, Request, StubServer
from csc_harness.llm.models import MODELS_VAR, load_models

SECRET = "sk-proj-abcdefghijklmnop1234"


def write(tmp_path, data, name="models.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def entry(name, base, model="openai/judge", **params):
    return {"model_name": name, "litellm_params": {"model": model, "api_base": base, **params}}


@pytest.mark.parametrize("data, message", [
    pytest.param({"model_list": [entry("j", None, api_key=SECRET)]},
                 "a key written in the file is refused", id="literal-key"),
    pytest.param({"model_list": [{"model_name": "j", "litellm_params": {"api_base": "x"}}]},
                 "needs model:", id="no-model"),
    pytest.param({"model_list": [entry("j", None, rmp=5)]}, "unknown key 'rmp'",
                 id="unknown-param"),
    pytest.param({"model_list": [entry("j", None)], "router_settings": {"num_retries": 3}},
                 "retries failed calls itself", id="router-retries"),
    pytest.param({"model_list": [entry("j", "http://u:pw@127.0.0.1:1/v1")]},
                 "carries credentials", id="credential-url"),
    pytest.param({"model_list": []}, "non-empty model_list", id="empty"),
    pytest.param({"model_list": [entry("j", None, rpm=-1)]}, "rpm: must be a number > 0",
                 id="bad-rpm"),
])
def test_a_bad_model_list_is_refused_in_one_line_naming_the_entry(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(UserError) as caught:
        load_models(path)
    text = str(caught.value)
    assert message in text and str(path) in text and "\n" not in text
    assert SECRET not in text


def test_a_literal_key_stops_the_cli_with_exit_2_and_never_shows_it(tmp_path, capsys):
    path = write(tmp_path, {"model_list": [entry("j", None, api_key=SECRET)]})
    code = main(["judge", "--candidates", str(tmp_path / "none.jsonl"), "--out",
                 str(tmp_path / "out"), "--judge", "j", "--models", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "refused" in err and SECRET not in err


def test_the_key_is_read_from_the_environment_at_call_time(tmp_path, monkeypatch):
    path = write(tmp_path, {"model_list": [entry("j", "http://127.0.0.1:9/v1",
                                                 api_key="os.environ/MY_JUDGE_KEY")]})
    models = load_models(path)  # loading needs no key
    deployment = models.get("j")[0]
    with pytest.raises(UserError, match=r"\$MY_JUDGE_KEY, which is not set"):
        deployment.api_key()
    monkeypatch.setenv("MY_JUDGE_KEY", SECRET)
    assert deployment.api_key() == SECRET
    assert SECRET not in str(models.public())


def ask(client, model, text="hello", api_base=None):
    request = Request(model=model, messages=({"role": "user", "content": text},),
                      api_base=api_base)
    return asyncio.run(client.complete(request))


def test_replicas_under_one_name_share_cache_entries(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with StubServer(["from a"]) as a, StubServer(["from b"]) as b:
        first = load_models(write(tmp_path, {"model_list": [entry("judge", a.base_url)]}, "1.yaml"))
        second = load_models(write(tmp_path, {"model_list": [entry("judge", b.base_url)]}, "2.yaml"))
        fresh = ask(Client(cache_path=cache, models=first), "judge")
        again = ask(Client(cache_path=cache, models=second), "judge")
    assert fresh.text == again.text == "from a" and again.cached
    assert fresh.deployment == "judge#1" and len(b.requests) == 0


def test_an_api_base_outside_a_model_list_stays_in_the_cache_key(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with StubServer(["from a"]) as a, StubServer(["from b"]) as b:
        one = ask(Client(cache_path=cache), "openai/judge", api_base=a.base_url)
        two = ask(Client(cache_path=cache), "openai/judge", api_base=b.base_url)
    assert (one.text, two.text) == ("from a", "from b") and not two.cached
    assert one.deployment is None


def test_the_cli_exports_the_list_for_every_client_of_the_command(tmp_path, monkeypatch):
    with StubServer(fake_judge) as stub:
        path = write(tmp_path, {"model_list": [entry("my-judge", stub.base_url)]})
        cands = tmp_path / "c.jsonl"
        cands.write_text("\n".join(
            '{"item_id": "%s", "model": "m", "reply": "hello there"}' % c.item.item_id
            for c in candidates(2)[::2]) + "\n", encoding="utf-8")
        code = main(["judge", "--candidates", str(cands), "--out", str(tmp_path / "out"),
                     "--judge", "my-judge", "--models", str(path), "--no-progress",
                     "--cache", str(tmp_path / "cache.sqlite")])
    assert code == 0
    rows = read_rows(tmp_path / "out")
    assert rows and {r["deployment"] for r in rows} == {"my-judge#1"}
    assert {r["judge"] for r in rows} == {"my-judge"}


def test_a_router_spreads_calls_and_survives_a_dead_deployment(tmp_path):
    """Two deployments of one judge; the first dies after 12 answers: every judgment is ok,
    answers came from both before the death and only from the survivor after it."""
    dead_at = 12
    a = StubServer(latency=0.005)
    answered = Counter()

    def dying(body):
        answered["a"] += 1
        if answered["a"] == dead_at:
            threading.Thread(target=a.stop, daemon=True).start()
        return fake_judge(body)

    a = StubServer(dying, latency=0.005)
    with a, StubServer(fake_judge, latency=0.005) as b:
        path = write(tmp_path, {
            "model_list": [entry("judge", a.base_url), entry("judge", b.base_url)],
            "router_settings": {"cooldown_time": 60}})
        result = run(JudgeConfig(judges=("judge",)), candidates(10), tmp_path / "out",
                     models=load_models(path), concurrency=4)
        served_by_a = len(a.requests)
    rows = read_rows(tmp_path / "out")
    assert result.exit_code == 0 and len(rows) == 10 * 2 * 3
    assert {r["status"] for r in rows} == {"ok"}
    by = Counter(r["deployment"] for r in rows)
    assert by["judge#1"] >= 1 and by["judge#2"] > by["judge#1"]
    assert served_by_a <= dead_at + 4  # at most the calls in flight at its death reached it
    assert MODELS_VAR not in __import__("os").environ


def test_simulate_takes_every_role_from_the_model_list(tmp_path, monkeypatch):
    """``simulate --models``: the candidate, the customer and the judge are list names, each
    served by its own deployment (no --api-base at all); rows carry the list names."""
    from test_simulate_support import scripted

    monkeypatch.setenv("CUST_KEY", SECRET)
    with StubServer(scripted(finished_after=4)) as cand, \
            StubServer(scripted(finished_after=4)) as rest:
        path = write(tmp_path, {"model_list": [
            entry("cand", cand.base_url, model="openai/cand-a"),
            entry("cust", rest.base_url, model="openai/cust", api_key="os.environ/CUST_KEY"),
            entry("grader", rest.base_url, model="openai/judge")]})
        code = main(["simulate", "--models", str(path), "--model", "cand", "--customer",
                     "cust", "--judge", "grader", "--scenarios", "2", "--max-turns", "6",
                     "--cache", str(tmp_path / "cache.sqlite"), "--rounds", "20",
                     "--no-progress", "--out", str(tmp_path / "out")])
        seen_cand = {b["model"] for b in cand.requests}
        seen_rest = {b["model"] for b in rest.requests}
    assert code == 0
    assert seen_cand == {"cand-a"} and seen_rest == {"cust", "judge"}
    transcripts = (tmp_path / "out" / "transcripts.jsonl").read_text(encoding="utf-8")
    assert '"model": "cand"' in transcripts
    assert SECRET not in "".join(p.read_text(encoding="utf-8", errors="replace")
                                 for p in (tmp_path / "out").rglob("*") if p.is_file())


@pytest.mark.parametrize("model, base, backend", [
    pytest.param("openai/m", "http://127.0.0.1:9/v1", "local-chat-completions", id="openai"),
    pytest.param("anthropic/claude-sonnet-4-5", "http://127.0.0.1:9",
                 "anthropic-chat-completions", id="anthropic"),
])
def test_a_listed_endpoint_gets_the_lm_eval_backend_of_its_provider(model, base, backend):
    from csc_harness.pipeline import lm_eval_backend

    name, args = lm_eval_backend(model, base, concurrency=2)
    assert name == backend and "127.0.0.1:9" in args and "api_key" not in args


def test_run_reference_context_calls_the_listed_deployment_through_lm_eval(
        tmp_path, monkeypatch, capsys, data_file):
    """``run --model <listed name>``: lm-eval calls the entry's first deployment (no
    --api-base given), gets the key through its environment variable only while it runs,
    says the second deployment is unused, and rows name the entry."""
    monkeypatch.setenv("CAND_KEY", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keys_seen = set()

    def candidate(body):
        keys_seen.add(__import__("os").environ.get("OPENAI_API_KEY"))
        return "[Greeting] Hello, how can I help?"

    with StubServer(candidate) as a, StubServer(candidate) as b, StubServer(fake_judge) as j:
        path = write(tmp_path, {"model_list": [
            entry("cand", a.base_url, model="openai/cand-a", api_key="os.environ/CAND_KEY"),
            entry("cand", b.base_url, model="openai/cand-b"),
            entry("grader", j.base_url)]})
        code = main(["run", "--models", str(path), "--model", "cand", "--judge", "grader",
                     "--setting", "reference", "--controls", "none", "--rounds", "20",
                     "--cache", str(tmp_path / "cache" / "llm.sqlite"), "--no-progress",
                     "--out", str(tmp_path / "out")])
        served = ({x["model"] for x in a.requests}, len(b.requests), len(j.requests))
    err = capsys.readouterr().err
    assert code == 0, err
    assert served[0] == {"cand-a"} and served[1] == 0 and served[2] > 0
    assert keys_seen == {SECRET} and "OPENAI_API_KEY" not in __import__("os").environ
    assert "lm-eval (reference context) calls only the first, 'cand#1'" in err
    rows = read_rows(tmp_path / "out" / "judge")
    assert rows and {r["model"] for r in rows} == {"cand"}
    written = "".join(p.read_text(encoding="utf-8", errors="replace")
                      for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert SECRET not in written
