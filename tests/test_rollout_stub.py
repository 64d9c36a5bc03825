"""The two CSC settings against a loopback stub: what each turn's context holds, resuming,
and metrics from the shared metric code."""

import itertools
import json
import threading

import pytest

from csc_harness import metrics
from csc_harness.data import Utterance, expand, load_conversations
from csc_harness.errors import DataError
from csc_harness.framework import parse_reply
from csc_harness.llm.stub import StubReply, StubServer
from csc_harness.prompting import reply_messages
from csc_harness.rollout import answer_row, generate

MODEL = "openai/stub-model"
DATA = [
    {"id": "z1", "source": "产品咨询", "dialogue": [
        {"speaker": "客户", "text": "你好，我想问一下理财产品。"},
        {"speaker": "客服", "strategy": "策略1 礼貌问候", "text": "金牌客服一号：您好！"},
        {"speaker": "客户", "text": "那个产品收益多少？"},
        {"speaker": "客服", "strategy": "策略4 细化问题", "text": "金牌客服二号：请问是哪款？"},
        {"speaker": "客服", "strategy": "策略7 信息传达", "text": "金牌客服三号：年化3.2%。"},
        {"speaker": "客户", "text": "好的，谢谢。"},
        {"speaker": "客服", "strategy": "策略11 感谢与告别", "text": "金牌客服四号：再见！"},
    ]},
    {"id": "e1", "source": "技术故障", "dialogue": [
        {"speaker": "agent", "strategy": "Greeting", "text": "GOLD-A Hello, how can I help?"},
        {"speaker": "customer", "text": "Hi, the app keeps crashing."},
        {"speaker": "agent", "strategy": "PR", "text": "GOLD-B Which phone do you use?"},
        {"speaker": "customer", "text": "An old one, it crashes at login."},
        {"speaker": "agent", "strategy": "PS", "text": "GOLD-C Please update the app."},
    ]},
    {"id": "e2", "source": "其他", "dialogue": [
        {"speaker": "customer", "text": "Is the branch open on Sunday?"},
        {"speaker": "agent", "strategy": "ID", "text": "GOLD-D Yes, from 9 to 5."},
        {"speaker": "customer", "text": "Great."},
        {"speaker": "agent", "strategy": "AC", "text": "GOLD-E Thanks, goodbye!"},
    ]},
]
GOLD_SUPPORTER = [u["text"] for d in DATA for u in d["dialogue"] if "strategy" in u]


class Recorder:
    """Answers ``[Greeting] STUB-REPLY-<n>`` (unique) and records (body, answer) pairs."""

    def __init__(self, labels=("Greeting",)):
        self.counter = itertools.count(1)
        self.labels = itertools.cycle(labels)
        self.lock = threading.Lock()
        self.calls = []

    def __call__(self, body):
        with self.lock:
            n = next(self.counter)
            answer = f"[{next(self.labels)}] STUB-REPLY-{n}"
            self.calls.append((body, answer))
        return StubReply(answer)

    def by_dialogue(self):
        """Calls grouped by dialogue (found from its customer turns), in arrival order."""
        groups = {}
        for body, answer in self.calls:
            groups.setdefault(dialogue_of(body), []).append((body, answer))
        return groups


def dialogue_of(body):
    users = {m["content"] for m in body["messages"] if m["role"] == "user"}
    for dialogue in DATA:
        if users & {u["text"] for u in dialogue["dialogue"] if "strategy" not in u}:
            return dialogue["id"]
    return "e1"  # the only dialogue opening with a supporter turn: no customer turn yet


@pytest.fixture
def data_path(tmp_path):
    path = tmp_path / "csconv.json"
    path.write_text(json.dumps(DATA, ensure_ascii=False), encoding="utf-8")
    return str(path)


def run(stub, data_path, out, setting, **kwargs):
    kwargs.setdefault("cache_path", out.parent / "cache.sqlite")
    return generate(MODEL, out=out, setting=setting, api_base=stub.base_url, data=data_path,
                    progress=False, **kwargs)


def rows_of(out):
    lines = (out / "candidates.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_generated_context_holds_the_models_own_earlier_replies(tmp_path, data_path):
    recorder = Recorder()
    with StubServer(recorder) as stub:
        run(stub, data_path, tmp_path / "out", "generated", concurrency=3)
    groups = recorder.by_dialogue()
    for conv in load_conversations(data_path):
        calls = groups[conv.id]
        assert len(calls) == len(expand(conv))
        for k, (example, (body, _)) in enumerate(zip(expand(conv), calls)):
            earlier = [answer.removeprefix("[Greeting] ") for _, answer in calls[:k]]
            sent = body["messages"][1:]
            assistant = [m["content"] for m in sent if m["role"] == "assistant"]
            assert assistant == earlier, (conv.id, k)
            customers = [m["content"] for m in sent if m["role"] == "user"
                         and not m["content"].startswith(("(", "（"))]
            gold_customers = [u.text for u in example.context if u.speaker == "customer"]
            assert customers == gold_customers, (conv.id, k)


def test_generated_context_never_contains_gold_supporter_replies(tmp_path, data_path):
    recorder = Recorder()
    with StubServer(recorder) as stub:
        run(stub, data_path, tmp_path / "out", "generated", concurrency=2)
    sent = json.dumps([body for body, _ in recorder.calls], ensure_ascii=False)
    assert not [gold for gold in GOLD_SUPPORTER if gold in sent]


def test_generated_setting_messages_are_reply_messages_of_the_rolled_out_context(
        tmp_path, data_path):
    recorder = Recorder()
    with StubServer(recorder) as stub:
        run(stub, data_path, tmp_path / "out", "generated", concurrency=1)
    conv = load_conversations(data_path)[1]  # e1: opens with a supporter turn
    utterances = list(conv.utterances)
    calls = recorder.by_dialogue()["e1"]
    assert len(calls) == len(expand(conv))
    for example, (body, answer) in zip(expand(conv), calls):
        turn = example.turn_index
        assert body["messages"] == reply_messages(utterances[:turn], conv.language)
        code, reply = parse_reply(answer)
        utterances[turn] = Utterance("supporter", reply, code)


def test_reference_setting_sends_the_gold_history(tmp_path, data_path):
    recorder = Recorder()
    with StubServer(recorder) as stub:
        run(stub, data_path, tmp_path / "out", "reference", concurrency=4)
    expected = sorted(json.dumps(reply_messages(ex.context, ex.language), ensure_ascii=False)
                      for conv in load_conversations(data_path) for ex in expand(conv))
    sent = sorted(json.dumps(body["messages"], ensure_ascii=False)
                  for body, _ in recorder.calls)
    assert sent == expected
    assert all(body["temperature"] == 0 and body["max_tokens"] == 200
               for body, _ in recorder.calls)


@pytest.mark.parametrize("setting", ["reference", "generated"])
def test_rows_carry_item_ids_raw_answer_and_parsed_reply(tmp_path, data_path, setting):
    recorder = Recorder(labels=("Problem Refinement", "AC"))
    with StubServer(recorder) as stub:
        run(stub, data_path, tmp_path / "out", setting)
    rows = rows_of(tmp_path / "out")
    ids = [ex.item_id for conv in load_conversations(data_path) for ex in expand(conv)]
    assert sorted(r["item_id"] for r in rows) == sorted(ids)
    for row in rows:
        assert set(row) == {"item_id", "model", "reply", "raw", "predicted_strategy", "setting"}
        assert row["model"] == MODEL and row["setting"] == setting
        assert row["raw"].endswith(row["reply"]) and row["reply"].startswith("STUB-REPLY-")
        assert row["predicted_strategy"] in ("PR", "AC")


@pytest.mark.parametrize("setting", ["reference", "generated"])
def test_a_second_run_makes_no_request_and_writes_no_duplicate(tmp_path, data_path, setting):
    with StubServer(Recorder()) as stub:
        first = run(stub, data_path, tmp_path / "out", setting, cache_mode="off")
        asked = len(stub.requests)
        second = run(stub, data_path, tmp_path / "out", setting, cache_mode="off")
        assert len(stub.requests) == asked
    assert (first.new_rows, second.new_rows) == (asked, 0)
    assert len(rows_of(tmp_path / "out")) == asked == first.n == second.n
    assert first.metrics == second.metrics


def test_resuming_a_rollout_continues_from_the_replies_on_file(tmp_path, data_path):
    out = tmp_path / "out"
    current = [Recorder()]
    with StubServer(lambda body: current[0](body)) as stub:  # one endpoint for both runs
        run(stub, data_path, out, "generated", concurrency=1, cache_mode="off")
        rows = rows_of(out)
        kept = [r for r in rows if r["item_id"] in ("z1:1", "z1:3")]
        (out / "candidates.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
            + '{"item_id": "z1:4", "mod', encoding="utf-8")  # a line cut short by a kill
        recorder = current[0] = Recorder()
        result = run(stub, data_path, out, "generated", concurrency=1, cache_mode="off")
    assert result.new_rows == len(rows) - 2
    z1 = recorder.by_dialogue()["z1"]
    first_body = z1[0][0]
    assistant = [m["content"] for m in first_body["messages"] if m["role"] == "assistant"]
    assert assistant == [kept[0]["reply"], kept[1]["reply"]]  # z1:4 sees z1:1 and z1:3
    final = rows_of(out)
    assert len(final) == len({r["item_id"] for r in final}) == len(rows)


def test_metrics_json_equals_metrics_score_on_the_same_items(tmp_path, data_path):
    with StubServer(Recorder(labels=("Greeting", "PR", "Information Delivery"))) as stub:
        result = run(stub, data_path, tmp_path / "out", "generated")
    rows = {r["item_id"]: r for r in rows_of(tmp_path / "out")}
    items = [metrics.Scored(ex.strategy, rows[ex.item_id]["predicted_strategy"], ex.reply,
                            rows[ex.item_id]["reply"], ex.language)
             for conv in load_conversations(data_path) for ex in expand(conv)]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["metrics"] == metrics.score(items) == result.metrics
    assert saved["n"] == len(items) and saved["model"] == MODEL
    assert saved["setting"] == "generated" and saved["embedded"] is False
    assert saved["tokenization"] == metrics.TOKENIZATION


def test_limit_keeps_the_first_dialogues(tmp_path, data_path):
    with StubServer(Recorder()) as stub:
        result = run(stub, data_path, tmp_path / "out", "generated", limit=2)
    assert {r["item_id"].split(":")[0] for r in rows_of(tmp_path / "out")} == {"z1", "e1"}
    assert result.n == 7


def test_a_folder_of_another_model_is_refused(tmp_path, data_path):
    out = tmp_path / "out"
    out.mkdir()
    row = answer_row("z1:1", "openai/other", "[GT] hi", "generated")
    (out / "candidates.jsonl").write_text(row.to_json() + "\n", encoding="utf-8")
    with StubServer(Recorder()) as stub, pytest.raises(DataError, match="openai/other"):
        run(stub, data_path, out, "generated")


def test_name_is_what_rows_and_metrics_record_while_model_is_what_is_asked(tmp_path,
                                                                            data_path):
    import asyncio

    from csc_harness.llm import Client
    from csc_harness.rollout import generate_async

    async def go(stub):
        async with Client(cache_mode="off") as client:
            return await generate_async(load_conversations(data_path), model=MODEL,
                                        name="stub-model", client=client, out=tmp_path / "out",
                                        setting="generated", api_base=stub.base_url,
                                        progress=False)

    with StubServer(Recorder()) as stub:
        result = asyncio.run(go(stub))
        assert {body["model"] for body in stub.requests} == {"stub-model"}  # litellm strips openai/
    assert result.model == "stub-model"
    assert {r["model"] for r in rows_of(tmp_path / "out")} == {"stub-model"}
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["model"] == "stub-model"


# litellm leaves one of its own coroutines behind when the event loop closes on an error
@pytest.mark.filterwarnings("ignore:coroutine 'OpenAIChatCompletion.acompletion':RuntimeWarning")
def test_a_guard_that_raises_stops_the_run_and_keeps_finished_rows(tmp_path, data_path):
    import asyncio

    from csc_harness.llm import Client
    from csc_harness.rollout import generate_async

    calls = itertools.count()

    def guard():
        if next(calls) == 3:
            raise RuntimeError("server gone")

    async def go(stub):
        async with Client(cache_mode="off") as client:
            await generate_async(load_conversations(data_path), model=MODEL, client=client,
                                 out=tmp_path / "out", setting="generated", concurrency=1,
                                 api_base=stub.base_url, progress=False, guard=guard)

    with StubServer(Recorder()) as stub, pytest.raises(RuntimeError, match="server gone"):
        asyncio.run(go(stub))
    assert len(stub.requests) == 3 and len(rows_of(tmp_path / "out")) == 3
