import pytest

from csc_harness.errors import LabelError
from csc_harness.framework import (
    CODES,
    STRATEGIES,
    Stage,
    default_stage_map,
    parse_reply,
    parse_stage_map,
    parse_strategy,
    stage_for_turns,
)


def test_twelve_strategies_in_five_stages():
    assert CODES == ("GT", "IV", "RP", "PR", "EM", "PS", "ID", "RI", "FR", "RC", "AC", "OT")
    assert [s.number for s in STRATEGIES] == list(range(1, 13))
    assert {s.default_stage for s in STRATEGIES if s.default_stage} == set(Stage)
    assert all(s.definition and s.definition_zh and s.zh for s in STRATEGIES)
    assert [s.number for s in Stage] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "label",
    [
        pytest.param("策略1 礼貌问候", id="csconv-form"),
        pytest.param("礼貌问候", id="chinese-name"),
        pytest.param("Greeting", id="english-name"),
        pytest.param("GT", id="code"),
        pytest.param("[Greeting]", id="bracketed"),
        pytest.param("【礼貌问候】", id="chinese-brackets"),
        pytest.param("  gREETing  ", id="case-and-spaces"),
        pytest.param("策略1  礼貌问候 ", id="extra-inner-space"),
        pytest.param("Strategy 1", id="strategy-number"),
        pytest.param("策略1", id="chinese-number"),
    ],
)
def test_every_label_form_names_the_same_strategy(label):
    assert parse_strategy(label).code == "GT"


def test_multiword_english_names_parse():
    assert parse_strategy("identity   verification").code == "IV"
    assert parse_strategy("Restatement or Paraphrasing").code == "RP"
    assert parse_strategy("[Appreciation and Closure]").code == "AC"


@pytest.mark.parametrize("label", ["Hello", "策略13 礼貌问候", "策略2 礼貌问候", "", "XX"])
def test_unknown_label_raises_naming_it_and_listing_valid_ones(label):
    with pytest.raises(LabelError) as err:
        parse_strategy(label)
    assert repr(label) in str(err.value)
    assert "GT (Greeting, 策略1 礼貌问候)" in str(err.value)
    assert "OT (Others, 策略12 其它)" in str(err.value)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param("[Greeting] Hello there", ("GT", "Hello there"), id="english"),
        pytest.param("[策略6 提供建议] 您可以先重启应用。", ("PS", "您可以先重启应用。"), id="csconv-label"),
        pytest.param("【情感管理】非常理解您的心情", ("EM", "非常理解您的心情"), id="fullwidth"),
        pytest.param("Strategy: PR\nReply: Which card?", ("PR", "Which card?"), id="two-lines"),
        pytest.param("[姓名]您好，请讲", (None, "[姓名]您好，请讲"), id="placeholder-not-label"),
        pytest.param("Just a reply", (None, "Just a reply"), id="no-label"),
        pytest.param("", (None, ""), id="empty"),
        pytest.param(None, (None, ""), id="none"),
        pytest.param("[Greeting] Hi.\n\nHow can I help?", ("GT", "Hi.\n\nHow can I help?"),
                     id="blank-line-kept"),
    ],
)
def test_parse_reply_is_tolerant(output, expected):
    assert parse_reply(output) == expected


def test_stage_map_is_overridable():
    custom = parse_stage_map({"Problem Refinement": "Identifying", "OT": "Resolving"})
    assert custom["PR"] is Stage.IDENTIFYING
    assert custom["OT"] is Stage.RESOLVING
    assert custom["GT"] is Stage.CONNECTING
    assert default_stage_map()["PR"] is Stage.EXPLORING


def test_unknown_stage_in_override_is_an_error():
    with pytest.raises(LabelError, match="unknown stage 'Closing'"):
        parse_stage_map({"GT": "Closing"})


def test_others_inherits_the_stage_of_the_turn_before():
    assert stage_for_turns(["OT", "GT", "PR", "OT", "AC"]) == [
        Stage.CONNECTING, Stage.CONNECTING, Stage.EXPLORING, Stage.EXPLORING, Stage.MAINTAINING
    ]
