"""Real lm-eval runs of the CSConv tasks against a loopback OpenAI-compatible stub."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

from csc_harness.data import load_examples
from csc_harness.errors import MissingDependency
from csc_harness.framework import format_reply
from csc_harness.llm.stub import StubServer

ROOT = Path(__file__).resolve().parents[1]
PARTIAL = {
    "z1:1": "[Greeting] 您好，很高兴为您服务！",
    "z1:3": "[Providing Suggestions] 该产品收益为3.2%。",
    "e1:1": "Hello, thanks for reaching out!",
    "e1:3": "[PR] Which phone are you using?\n\nThanks.",
}


def answer_by_context(answers):
    """Replies keyed by item id, found from the chat messages the stub receives."""
    by_context = {}
    for ex in load_examples():
        turns = tuple(u.text for u in ex.context)
        by_context[turns] = answers[ex.item_id] if answers else format_reply(ex.strategy, ex.reply)

    def respond(body):
        messages = body["messages"][1:]
        turns = tuple(m["content"] for m in messages if not m["content"].startswith(("(", "（")))
        return by_context[turns]

    return respond


def evaluate(stub, tasks=("csconv",)):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(
        model="local-chat-completions",
        model_args=f"model=stub-model,base_url={stub.base_url}/chat/completions,"
        "num_concurrent=1,max_retries=1",
        tasks=list(tasks),
        task_manager=TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False),
        apply_chat_template=True,
        bootstrap_iters=0,
        log_samples=True,
    )


def test_perfect_replies_score_100(data_file):
    with StubServer(answer_by_context(None)) as stub:
        results = evaluate(stub)["results"]["csconv_reply"]
    for metric in ("strategy_acc", "strategy_f1", "bleu2", "bleu4", "rougeL"):
        assert results[f"{metric},none"] == pytest.approx(100.0), metric


def test_partial_replies_score_hand_computed_values(data_file):
    with StubServer(answer_by_context(PARTIAL)) as stub:
        out = evaluate(stub)
    results = out["results"]["csconv_reply"]
    assert results["strategy_acc,none"] == 50.0
    # gold GT: tp1 fn1 -> 2/3; ID: tp0 -> 0; PR: tp1 -> 1 (PS is predicted, not gold)
    assert results["strategy_f1,none"] == pytest.approx(100 * (2 / 3 + 0 + 1) / 3)
    # z1:3 13 ref tokens, 8 hyp tokens all in order; e1:3 LCS 5 of 6 each way
    assert results["rougeL,none"] == pytest.approx(100 * (1 + 16 / 21 + 1 + 5 / 6) / 4)
    refs = ["您好，很高兴为您服务！", "该产品近一年年化收益为3.2%。",
            "Hello, thanks for reaching out!", "Which phone model are you using?"]
    hyps = ["您好，很高兴为您服务！", "该产品收益为3.2%。",
            "Hello, thanks for reaching out!", "Which phone are you using?\n\nThanks."]
    tok = [TokenizerZh(), TokenizerZh(), Tokenizer13a(), Tokenizer13a()]
    stats = BLEU(tokenize="none").corpus_score(
        [t(h) for t, h in zip(tok, hyps)], [[t(r) for t, r in zip(tok, refs)]])
    assert results["bleu4,none"] == pytest.approx(stats.score)
    bleu2 = BLEU(tokenize="none", max_ngram_order=2).corpus_score(
        [t(h) for t, h in zip(tok, hyps)], [[t(r) for t, r in zip(tok, refs)]])
    assert results["bleu2,none"] == pytest.approx(bleu2.score)
    samples = {s["doc"]["item_id"]: s for s in out["samples"]["csconv_reply"]}
    assert samples["e1:3"]["filtered_resps"][0] == PARTIAL["e1:3"], "reply cut at a blank line"


def test_model_receives_real_chat_messages(data_file):
    with StubServer(answer_by_context(None)) as stub:
        evaluate(stub)
    later = [b for b in stub.requests if "那个产品收益多少？" in json.dumps(b, ensure_ascii=False)]
    (body,) = later
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert "策略" in body["messages"][0]["content"] and "[Greeting]" in body["messages"][0]["content"]
    assert body["messages"][2]["content"] == "您好，很高兴为您服务！"
    assert not body.get("stop")


def test_lm_eval_cli_through_csc_harness_writes_results_and_samples(data_file, tmp_path):
    out = tmp_path / "out"
    with StubServer(answer_by_context(None)) as stub:
        proc = subprocess.run(
            [sys.executable, "-m", "csc_harness.cli", "lm-eval", "--tasks", "csconv",
             "--model", "local-chat-completions",
             "--model_args", f"model=stub-model,base_url={stub.base_url}/chat/completions,"
             "num_concurrent=2,max_retries=1",
             "--apply_chat_template", "--output_path", str(out), "--log_samples"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]["csconv_reply"]
    assert results["strategy_acc,none"] == 100.0
    (samples_file,) = out.rglob("samples_csconv_reply_*.jsonl")
    assert len(samples_file.read_text().splitlines()) == 4


def test_strategy_mc_task_builds_twelve_choices(data_file):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False)
    task = manager.load(["csconv_strategy_mc"])["tasks"]["csconv_strategy_mc"]
    docs = list(task.test_docs())
    assert len(docs) == 4
    assert len(task.doc_to_choice(docs[0])) == 12
    assert task.doc_to_choice(docs[0])[task.doc_to_target(docs[1])] == "Information Delivery]"


def test_dialogues_metadata_keeps_whole_dialogues(data_file):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False,
                          metadata={"dialogues": 1})
    task = manager.load(["csconv_reply"])["tasks"]["csconv_reply"]
    assert [d["item_id"] for d in task.test_docs()] == ["z1:1", "z1:3"]


def load_task(name):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False)
    return manager.load([name])["tasks"][name]


def test_bertscore_task_builds_when_bert_score_is_importable(data_file, monkeypatch):
    fake = types.ModuleType("bert_score")
    monkeypatch.setitem(sys.modules, "bert_score", fake)
    assert len(list(load_task("csconv_reply_bertscore").test_docs())) == 4


def test_a_missing_bert_score_is_reported_when_the_task_is_built(data_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "bert_score", None)
    with pytest.raises(MissingDependency, match=r"pip install 'csc-harness\[bertscore\]'"):
        load_task("csconv_reply_bertscore")


BLOCK_BERT_SCORE = "import sys; sys.modules['bert_score'] = None; "


def test_a_missing_bert_score_stops_lm_eval_before_any_reply(data_file, tmp_path):
    with StubServer(answer_by_context(None)) as stub:
        proc = subprocess.run(
            [sys.executable, "-c", BLOCK_BERT_SCORE + "from csc_harness.cli import main; "
             "sys.exit(main())", "lm-eval", "--tasks", "csconv_reply_bertscore",
             "--model", "local-chat-completions",
             "--model_args", f"model=stub-model,base_url={stub.base_url}/chat/completions,"
             "num_concurrent=1,max_retries=1", "--apply_chat_template",
             "--output_path", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
    assert proc.returncode == 2
    assert stub.requests == [], "replies were generated before the missing package was found"
    assert "pip install 'csc-harness[bertscore]'" in proc.stderr
    assert "Traceback" not in proc.stderr
