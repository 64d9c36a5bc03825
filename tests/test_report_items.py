"""The items view of report.html in the real headless browser (Debian's chromium): it lists
the judged items with each reply's own automatic metrics, a filter narrows the list,
simulated conversations beside the judgments are listed and filtered the same way, and
a reply or transcript holding HTML/JS shows as text and runs nothing. The browser is
driven as in test_report_html.py."""

from __future__ import annotations

import json
import re

import pytest
from test_report_html import CHROMIUM, page_requests, proxy
from test_report_html import chromium as run_chromium

from csc_harness.analysis import leaderboard, load_automatic_metrics, load_judgments
from csc_harness.analysis.items import load_items
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.report import script_json, write_leaderboard

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
MODELS = ("model-a", "model-b")
EVIL = ('</script><script>document.body.dataset.pwned="script"</script>'
        '<img src="http://example.invalid/x.png" onerror="document.body.dataset.pwned=\'img\'">'
        '<b id="evil">bold?</b>')
CONV_EVIL = '<script>document.body.dataset.pwned="conv"</script><i id="conv-evil">x</i>'
SAME = "您好，请问有什么可以帮您办理的业务吗"


def dataset(path, dialogues: int) -> None:
    records = []
    for d in range(dialogues):
        turns = []
        for t in range(10):
            if t % 2:
                turns.append({"speaker": "客服", "strategy": "策略6 提供建议",
                              "text": f"客服回复 {d}-{t}"})
            else:
                turns.append({"speaker": "客户", "text": f"客户问题 {d}-{t}"})
        records.append({"id": f"conv{d:05d}", "source": "产品咨询", "dialogue": turns})
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def lm_eval_samples(folder, items: list[str]) -> None:
    """model-a's lm-eval results and samples: the first item's reply equals its reference
    (every metric 100, strategy right), the others share nothing with it."""
    folder.mkdir(parents=True)
    date = "2026-01-01T00-00-00.000000"
    (folder / f"results_{date}.json").write_text(json.dumps(
        {"model_name": "model-a", "results": {"csconv_reply": {
            "alias": "csconv_reply", "rougeL,none": 10.0, "strategy_acc,none": 10.0}}}))
    with open(folder / f"samples_csconv_reply_{date}.jsonl", "w", encoding="utf-8") as f:
        for i, item in enumerate(items):
            reply = SAME if i == 0 else "ok ok"
            f.write(json.dumps({"doc": {"item_id": item, "conversation_id": item.split(":")[0]},
                                "bleu2": [SAME, reply, "zh"], "rougeL": 100.0 if i == 0 else 0.0,
                                "strategy_acc": 100.0 if i == 0 else 0.0},
                               ensure_ascii=False) + "\n")


def transcripts(folder) -> None:
    """``run --interactive`` output: two customers met by both models, judged per
    conversation; model-b's second conversation holds a script."""
    rows, verdicts = [], []
    base = next(iter(synthetic_rows(("x",), dialogues=1, turns=1, seed=0)))
    for k, (topic, lang) in enumerate((("账户交易", "zh"), ("Billing", "en"))):
        for model in MODELS:
            cid = f"scenario{k}/0"
            text = CONV_EVIL if (k, model) == (1, "model-b") else f"{model} helps {k}"
            rows.append({"conversation_id": cid, "scenario_id": f"scenario{k}", "sample": 0,
                         "model": model, "customer": "judge-x", "topic": topic,
                         "language": lang, "end_reason": "customer_satisfied",
                         "turns": [{"speaker": "customer", "text": f"help me {k}"},
                                   {"speaker": "supporter", "text": text, "strategy": "PS"}]})
            verdicts.append(base | {"item_id": cid, "conversation_id": cid, "stage": None,
                             "strategy": None, "turn_index": None, "model": model,
                             "judge": "judge-x", "topic": topic, "language": lang,
                             "dimension": "resolution", "variant": "conversation",
                             "status": "ok", "score": 5.0 if model == "model-a" else 2.0,
                             "rationale": f"conversation verdict <u>{model}</u>"})
    write_jsonl(iter(rows), folder / "transcripts.jsonl")
    write_jsonl(iter(verdicts), folder / "judge" / "conversation" / "judgments.jsonl")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("items")
    rows = list(synthetic_rows(MODELS, dialogues=6, turns=3, judges=("judge-x", "judge-y"),
                               seed=2))
    first = rows[0]["item_id"]
    rows = [dict(r, reply=EVIL, rationale="judge says <i>hi</i>")
            if r["item_id"] == first and r["model"] == "model-b" else r for r in rows]
    judge = folder / "run" / "judge"
    write_jsonl(iter(rows), judge / "judgments.jsonl")
    lm_eval_samples(folder / "run" / "lm_eval" / "model-a",
                    list(dict.fromkeys(r["item_id"] for r in rows)))
    transcripts(folder / "run" / "interactive")
    dataset(folder / "data.json", 6)
    metrics = load_automatic_metrics([folder / "run" / "lm_eval"])
    board = leaderboard(load_judgments([judge]), rounds=50)
    items = load_items([judge], data=str(folder / "data.json"), metrics=metrics)
    write_leaderboard(board, folder / "out", items)
    return folder / "out" / "report.html", items


def test_the_page_embeds_item_text_only_inside_the_json_block(page):
    html = page[0].read_text(encoding="utf-8")
    assert "'unsafe-inline'; script-src 'sha256-" in html
    assert "script-src 'unsafe-inline'" not in html
    assert EVIL not in html and "\\u003c/script>" in html
    block = re.search(r'<script type="application/json" id="items-data">(.*?)</script>',
                      html, re.DOTALL)
    assert json.loads(block.group(1)) == json.loads(script_json(page[1]))


def test_items_view_lists_every_item_with_context_and_gold(page, tmp_path, proxy):
    server, seen = proxy
    dom = run_chromium(page[0], tmp_path, server.server_address[1], "--dump-dom")
    assert 'data-items="18"' in dom  # 6 dialogues x 3 judged turns
    assert "18 of 18 items" in dom
    assert dom.count('class="item"') == 18
    assert "Gold reply" in dom and "客户问题 0-0" in dom
    assert "judge-y" in dom
    assert page_requests(seen) == []


def test_a_filter_narrows_the_list(page, tmp_path, proxy):
    server, _seen = proxy
    target = page[0].as_uri() + "#items?stage=Connecting&model=model-a"
    expected = sum(1 for it in page[1]["items"] if it[3] == "Connecting")
    assert 0 < expected < 18
    dom = run_chromium(_Uri(target), tmp_path, server.server_address[1], "--dump-dom")
    assert f'data-items="{expected}"' in dom
    assert dom.count('class="item"') == expected


def test_a_reply_with_html_and_script_shows_as_text_and_runs_nothing(page, tmp_path,
                                                                      proxy):
    server, seen = proxy
    dom = run_chromium(page[0], tmp_path, server.server_address[1], "--dump-dom")
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert "pwned" not in body
    assert '<b id="evil"' not in dom and '<img src="http' not in dom
    assert "&lt;b id=\"evil\"&gt;bold?&lt;/b&gt;" in dom
    assert "judge says &lt;i&gt;hi&lt;/i&gt;" in dom
    assert page_requests(seen) == []


class _Uri:
    """A page address with a fragment, for the chromium helper that calls ``as_uri()``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def as_uri(self) -> str:
        return self.uri


def test_a_reply_shows_its_own_automatic_metrics(page, tmp_path, proxy):
    server, _seen = proxy
    first = page[1]["items"][0][0]
    dom = run_chromium(page[0], tmp_path, server.server_address[1], "--dump-dom")
    card = re.search(rf'<article class="item" data-item="{re.escape(first)}">(.*?)</article>',
                     dom, re.DOTALL).group(1)
    model_a = re.search(r'<div class="reply" data-model="model-a">(.*?)</table>', card,
                        re.DOTALL).group(1)
    assert ("Automatic (reference setting, this reply alone): ROUGE-L 100.0 · BLEU-2 100.0 · "
            "BLEU-4 100.0 · strategy correct") in model_a
    model_b = re.search(r'<div class="reply" data-model="model-b">(.*?)</table>', card,
                        re.DOTALL).group(1)
    assert "Automatic" not in model_b  # no per-item metrics for model-b
    assert dom.count("strategy wrong</p>") == 17  # model-a's other items


def test_simulated_conversations_are_listed_with_their_verdicts(page, tmp_path,
                                                                proxy):
    server, _seen = proxy
    dom = run_chromium(page[0], tmp_path, server.server_address[1], "--dump-dom")
    assert 'data-conversations="2"' in dom and "2 of 2 conversations" in dom
    assert dom.count('class="item conversation"') == 2
    assert "model-a helps 0" in dom and "help me 1" in dom
    assert "conversation verdict &lt;u&gt;model-b&lt;/u&gt;" in dom
    # Their conversation-level rows are not listed again as items.
    assert 'data-items="18"' in dom


@pytest.mark.parametrize("query, conversations", [
    pytest.param("kind=conversation&topic=Billing", 1, id="topic"),
    pytest.param("language=en", 1, id="language"),
    pytest.param("kind=conversation&model=model-b", 2, id="model"),
    pytest.param("stage=Connecting", 0, id="stage-leaves-conversations-out"),
])
def test_filters_narrow_the_conversations(page, tmp_path, proxy,
                                          query, conversations):
    server, _seen = proxy
    target = _Uri(page[0].as_uri() + "#items?" + query)
    dom = run_chromium(target, tmp_path, server.server_address[1], "--dump-dom")
    assert f'data-conversations="{conversations}"' in dom
    assert dom.count('class="item conversation"') == conversations
    if query.startswith("stage"):
        connecting = sum(1 for it in page[1]["items"] if it[3] == "Connecting")
        assert f'data-items="{connecting}"' in dom


def test_a_transcript_with_a_script_shows_as_text(page, tmp_path, proxy):
    server, seen = proxy
    dom = run_chromium(page[0], tmp_path, server.server_address[1], "--dump-dom")
    assert "pwned" not in re.search(r"<body[^>]*>", dom).group(0)
    assert '<i id="conv-evil"' not in dom
    assert "&lt;script&gt;document.body.dataset.pwned" in dom
    assert page_requests(seen) == []


def test_the_simulate_report_shows_transcripts_with_the_items_view(tmp_path_factory, tmp_path,
                                                                   proxy):
    from csc_harness.simulate.board import write_board

    server, seen = proxy
    folder = tmp_path_factory.mktemp("sim")
    transcripts(folder)
    rows = [json.loads(line) for line in
            (folder / "transcripts.jsonl").read_text(encoding="utf-8").splitlines()]
    write_board(folder, rows, judged=True, rounds=20)
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "script-src 'sha256-" in html and CONV_EVIL not in html
    target = _Uri((folder / "report.html").as_uri() + "#items?model=model-b&language=en")
    dom = run_chromium(target, tmp_path, server.server_address[1], "--dump-dom")
    assert 'data-conversations="1"' in dom and "1 of 2 conversations" in dom
    assert "&lt;script&gt;document.body.dataset.pwned" in dom
    assert "conversation verdict &lt;u&gt;model-b&lt;/u&gt;" in dom
    assert "pwned" not in re.search(r"<body[^>]*>", dom).group(0)
    assert page_requests(seen) == []
