import json

import pytest

from csc_harness.cli import main
from csc_harness.data import expand, load_conversations, load_file, load_sample, statistics
from csc_harness.errors import DataError


@pytest.fixture(autouse=True)
def _no_stage_map(monkeypatch):
    """``--stage-map`` exports CSC_STAGE_MAP; start without one and restore it after."""
    monkeypatch.setenv("CSC_STAGE_MAP", "")


DIALOGUE = [
    {"speaker": "客户", "text": "你好，我的银行卡被锁了。"},
    {"speaker": "客服", "strategy": "策略1 礼貌问候", "text": "您好，很高兴为您服务。"},
    {"speaker": "客户", "text": "卡号是[银行卡号]。"},
    {"speaker": "客服", "strategy": "策略4 细化问题", "text": "请问是在什么时候被锁的？"},
    {"speaker": "客服", "strategy": "策略12 其它", "text": "稍等。"},
]


def write(tmp_path, records, name="data.json", jsonl=False):
    path = tmp_path / name
    if jsonl:
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False))
    return path


def test_released_shape_expands_into_supporter_turn_examples(tmp_path):
    path = write(tmp_path, [{"dialogue": DIALOGUE, "source": "账户交易"}])
    (conv,) = load_file(path)
    examples = expand(conv)
    assert [e.turn_index for e in examples] == [1, 3, 4]
    first, second, third = examples
    assert first.item_id == f"{conv.id}:1"
    assert [u.text for u in first.context] == ["你好，我的银行卡被锁了。"]
    assert (second.strategy, second.stage, second.topic, second.language) == (
        "PR", "Exploring", "账户交易", "zh")
    assert second.reply == "请问是在什么时候被锁的？"
    assert third.strategy == "OT" and third.stage == "Exploring"


def test_json_list_and_jsonl_load_the_same(tmp_path):
    records = [{"dialogue": DIALOGUE, "source": "账户交易"}]
    assert load_file(write(tmp_path, records)) == load_file(
        write(tmp_path, records, "data.jsonl", jsonl=True))


def test_english_speakers_and_explicit_ids(tmp_path):
    record = {"id": "e1", "source": "产品咨询", "dialogue": [
        {"speaker": "user", "text": "Hi there, what is the fee?"},
        {"speaker": "agent", "strategy": "Information Delivery", "text": "The fee is [amount]."},
        {"speaker": "customer", "text": "Thanks."},
        {"speaker": "supporter", "strategy": "AC", "text": "Thank you, goodbye."},
    ]}
    (conv,) = load_file(write(tmp_path, [record]))
    assert conv.id == "e1" and conv.language == "en"
    assert [e.item_id for e in expand(conv)] == ["e1:1", "e1:3"]


def test_derived_ids_are_stable_and_content_based(tmp_path):
    records = [{"dialogue": DIALOGUE}, {"dialogue": DIALOGUE[:2]}]
    ids = [c.id for c in load_file(write(tmp_path, records))]
    reordered = [c.id for c in load_file(write(tmp_path, records[::-1], "b.json"))]
    assert ids == reordered[::-1]
    assert all(i.startswith("csc-") for i in ids) and ids[0] != ids[1]


def test_identical_dialogues_without_ids_stay_distinct(tmp_path):
    ids = [c.id for c in load_file(write(tmp_path, [{"dialogue": DIALOGUE}] * 2))]
    assert ids[1] == ids[0] + "-2"


def bad(turn_patch=None, record_patch=None):
    dialogue = [dict(t) for t in DIALOGUE]
    if turn_patch:
        dialogue[3].update(turn_patch)
        dialogue[3] = {k: v for k, v in dialogue[3].items() if v is not None}
    record = {"dialogue": dialogue, "source": "账户交易", **(record_patch or {})}
    return [{"dialogue": DIALOGUE}, record]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        pytest.param(bad({"text": None}), "record 1, field 'dialogue[3].text': missing or empty text",
                     id="missing-text"),
        pytest.param(bad({"text": "  "}), "field 'dialogue[3].text'", id="blank-text"),
        pytest.param(bad({"speaker": "客服经理"}),
                     "record 1, field 'dialogue[3].speaker': unknown speaker '客服经理'",
                     id="unknown-speaker"),
        pytest.param(bad({"strategy": "策略99 瞎说"}),
                     "record 1, field 'dialogue[3].strategy': unknown strategy label '策略99 瞎说'",
                     id="unknown-strategy"),
        pytest.param(bad({"strategy": None}), "supporter turn without a strategy label",
                     id="missing-strategy"),
        pytest.param(bad(record_patch={"dialogue": []}), "record 1, field 'dialogue'",
                     id="empty-dialogue"),
        pytest.param([{"dialogue": DIALOGUE}, "oops"], "record 1: expected an object",
                     id="not-an-object"),
        pytest.param(bad(record_patch={"id": "x"}) + bad(record_patch={"id": "x"}),
                     "record 3, field 'id': duplicate dialogue id 'x'", id="duplicate-id"),
    ],
)
def test_bad_records_name_file_record_and_field(tmp_path, records, message):
    path = write(tmp_path, records)
    with pytest.raises(DataError) as err:
        load_file(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_json_names_its_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"dialogue": DIALOGUE}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"broken.jsonl, line 2: invalid JSON"):
        load_file(path)
    listed = tmp_path / "broken.json"
    listed.write_text('[\n{"dialogue": []},\n{oops}\n]')
    with pytest.raises(DataError, match=r"broken.json, line 3: invalid JSON"):
        load_file(listed)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="no such file; set CSCONV_DATA"):
        load_file(tmp_path / "nope.json")


def test_hub_offline_error_points_to_a_local_file(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="hf:DianJin/DianJin-CSC-Data.*set CSCONV_DATA=") as err:
        load_conversations("hf:DianJin/DianJin-CSC-Data")
    assert "\n" not in str(err.value)


def test_bundled_sample_meets_its_promises():
    convs = load_sample()
    stats = statistics(convs)
    assert stats["dialogues"] >= 40
    assert stats["languages"]["zh"] >= 20 and stats["languages"]["en"] >= 20
    assert len(stats["strategies"]) == 12
    assert len(stats["stages"]) == 5
    assert len(set(stats["topics"]) - {"unknown"}) >= 7
    assert stats["utterances"] / stats["dialogues"] >= 10
    text = " ".join(u.text for c in convs for u in c.utterances)
    assert "[手机号码]" in text or "[银行卡号]" in text
    assert len({c.id for c in convs}) == len(convs)


def test_csconv_data_env_selects_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CSCONV_DATA", str(write(tmp_path, [{"dialogue": DIALOGUE}])))
    assert len(load_conversations()) == 1


def test_data_check_json_prints_statistics(tmp_path, capsys):
    path = write(tmp_path, [{"dialogue": DIALOGUE, "source": "账户交易"}])
    assert main(["data", "check", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == {
        "dialogues": 1, "utterances": 5, "supporter_turns": 3,
        "strategies": {"GT": 1, "PR": 1, "OT": 1},
        "stages": {"Exploring": 2, "Connecting": 1},
        "topics": {"账户交易": 1}, "languages": {"zh": 1},
        "source": str(path), "warnings": [],
    }


def test_data_check_rejects_bad_file_with_exit_2(tmp_path, capsys):
    path = write(tmp_path, bad({"speaker": "robot"}))
    assert main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "record 1, field 'dialogue[3].speaker'" in err and "Traceback" not in err


def test_data_check_defaults_to_bundled_sample(capsys):
    assert main(["data", "check"]) == 0
    assert "bundled:sample: valid" in capsys.readouterr().out


def test_stage_map_override_changes_stages(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, [{"dialogue": DIALOGUE, "source": "账户交易"}])
    mapping = tmp_path / "stages.json"
    mapping.write_text(json.dumps({"细化问题": "Identifying"}, ensure_ascii=False))
    assert main(["data", "check", str(path), "--json", "--stage-map", str(mapping)]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == {"Identifying": 2, "Connecting": 1}
    monkeypatch.setenv("CSC_STAGE_MAP", str(mapping))
    from csc_harness.data import load_examples

    assert [e.stage for e in load_examples(str(path))] == ["Connecting", "Identifying",
                                                           "Identifying"]


def test_bad_stage_map_is_a_one_line_error(tmp_path, capsys):
    mapping = tmp_path / "stages.json"
    mapping.write_text('{"GT": "Nowhere"}')
    assert main(["data", "check", "--stage-map", str(mapping)]) == 2
    assert "stages.json: unknown stage 'Nowhere'" in capsys.readouterr().err
