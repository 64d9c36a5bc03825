"""Control replies on the bundled sample: each kind differs from gold in its documented way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from csc_harness.controls import (
    CONTROLS,
    EVERY,
    GENERIC,
    KINDS,
    RUN_CONTROLS,
    WRONG_LABEL,
    build_controls,
    control_kind,
    expected_to_lower,
    parse_controls,
    sample_dialogues,
    truncate,
)
from csc_harness.data import load_examples
from csc_harness.errors import UserError
from csc_harness.framework import BY_CODE, STRATEGIES, Stage

EXAMPLES = load_examples()
BY_ID = {ex.item_id: ex for ex in EXAMPLES}
ALL = build_controls(EXAMPLES)


def of(kind: str):
    return [c for c in ALL if c.model == f"control:{kind}"]


def test_every_kind_covers_every_item_of_the_sample():
    counts = Counter(c.model for c in ALL)
    assert counts == {f"control:{k}": len(EXAMPLES) for k in KINDS}


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "gold"])
def test_every_control_differs_from_gold(kind):
    for c in of(kind):
        ex = BY_ID[c.item_id]
        assert (c.reply, c.predicted_strategy) != (ex.reply, ex.strategy), c.item_id


def test_gold_is_the_reference_reply_with_its_label():
    assert all((c.reply, c.predicted_strategy) == (BY_ID[c.item_id].reply,
                                                   BY_ID[c.item_id].strategy) for c in of("gold"))


def test_mismatch_comes_from_another_conversation_at_the_same_stage():
    for c in of("mismatch"):
        ex, donor = BY_ID[c.item_id], BY_ID[c.source]
        assert donor.conversation_id != ex.conversation_id
        assert donor.stage == ex.stage
        assert (c.reply, c.predicted_strategy) == (donor.reply, donor.strategy)
        assert c.reply.strip() != ex.reply.strip()


def test_mismatch_keeps_language_and_strategy_on_the_sample():
    same = [BY_ID[c.source].language == BY_ID[c.item_id].language
            and BY_ID[c.source].strategy == BY_ID[c.item_id].strategy for c in of("mismatch")]
    assert all(BY_ID[c.source].language == BY_ID[c.item_id].language for c in of("mismatch"))
    assert sum(same) == 443  # the other 4: no other conversation has that strategy there


def test_mismatch_falls_back_to_another_language_and_skips_an_item_without_donor():
    zh = next(ex for ex in EXAMPLES if ex.language == "zh" and ex.stage == "Connecting")
    en = next(ex for ex in EXAMPLES if ex.language == "en" and ex.stage == "Connecting")
    lonely = next(ex for ex in EXAMPLES if ex.stage == "Maintaining")
    records = build_controls([zh, en, lonely], ["mismatch"])
    assert [(r.item_id, r.source) for r in records] == [(zh.item_id, en.item_id),
                                                        (en.item_id, zh.item_id)]


def test_truncated_keeps_at_most_30_percent_or_the_first_clause():
    for c in of("truncated"):
        gold = BY_ID[c.item_id].reply
        assert gold.startswith(c.reply) and len(c.reply) < len(gold)
        assert len(c.reply) <= max(1, int(0.3 * len(gold)))
        assert c.predicted_strategy == BY_ID[c.item_id].strategy


@pytest.mark.parametrize("text, cut", [
    pytest.param("您好，汇通银行客服中心，我是客服小林，请问有什么可以帮您？", "您好，",
                 id="zh-clause"),
    pytest.param("请问这次的处理结果您还满意吗？", "请问这次", id="zh-no-clause-fits"),
    pytest.param("Good morning, thank you for calling Huitong Bank today.", "Good morning,",
                 id="en-clause"),
    pytest.param("Could you please confirm your full name", "Could you", id="en-whole-words"),
    pytest.param("好的", "好", id="two-chars"),
    pytest.param("嗯", None, id="one-char-cannot-shrink"),
])
def test_truncate_rule(text, cut):
    assert truncate(text) == cut


def test_generic_is_the_fixed_non_answer_in_the_item_language_with_the_gold_label():
    for c in of("generic"):
        ex = BY_ID[c.item_id]
        assert c.reply == GENERIC[ex.language][0] and c.predicted_strategy == ex.strategy


def test_generic_switches_form_when_gold_is_the_non_answer():
    ex = EXAMPLES[0].__class__(**{**EXAMPLES[0].__dict__, "reply": "请您稍等。"})
    (record,) = build_controls([ex], ["generic"])
    assert record.reply == GENERIC["zh"][1]


def test_wrong_label_rule_puts_the_label_at_least_two_stages_away():
    order = list(Stage)
    for code, wrong in WRONG_LABEL.items():
        gold_stage = BY_CODE[code].default_stage or Stage.CONNECTING
        distance = abs(order.index(BY_CODE[wrong].default_stage) - order.index(gold_stage))
        assert wrong in ("AC", "GT") and wrong != code and distance >= 2, code
    assert {c: WRONG_LABEL[c] for c in ("GT", "EM", "OT", "PR", "AC")} == {
        "GT": "AC", "EM": "AC", "OT": "AC", "PR": "GT", "AC": "GT"}
    assert len(WRONG_LABEL) == len(STRATEGIES)


def test_wrong_label_keeps_the_text():
    for c in of("wrong-label"):
        ex = BY_ID[c.item_id]
        assert c.reply == ex.reply and c.predicted_strategy == WRONG_LABEL[ex.strategy]


def test_padded_keeps_the_gold_text_and_roughly_doubles_its_length():
    for c in of("padded"):
        gold = BY_ID[c.item_id].reply
        assert c.reply.startswith(gold) and c.predicted_strategy == BY_ID[c.item_id].strategy
        assert 2 * len(gold) <= len(c.reply) <= 2 * len(gold) + 64, c.item_id


def test_controls_are_deterministic_across_processes():
    code = ("import hashlib; from csc_harness.controls import build_controls;"
            "from csc_harness.data import load_examples;"
            "print(hashlib.sha256(repr(build_controls(load_examples(), seed=7)).encode())"
            ".hexdigest())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": str(s)}).stdout
            for s in (1, 2)}
    assert len(runs) == 1
    assert build_controls(EXAMPLES, seed=7) != build_controls(EXAMPLES, seed=8)


def test_table_documents_every_kind_and_what_it_lowers():
    assert set(CONTROLS) == set(KINDS)
    assert all(spec.description and spec.contrast for spec in CONTROLS.values())
    assert EVERY in CONTROLS["mismatch"].lowers
    assert expected_to_lower("control:mismatch", "anything")
    assert expected_to_lower("wrong-label", "strategy_adherence")
    assert not expected_to_lower("wrong-label", "empathy")
    assert not any(expected_to_lower("padded", d) for d in ("empathy", "problem_resolution"))
    assert not expected_to_lower("gold", "empathy") and not expected_to_lower("model-a", "x")


@pytest.mark.parametrize("values, kinds", [
    pytest.param(None, KINDS, id="default-all"),
    pytest.param(["none"], (), id="none"),
    pytest.param(["padded", "control:mismatch"], ("gold", "padded", "mismatch"), id="named"),
    pytest.param(["mismatch,padded"], ("gold", "mismatch", "padded"), id="comma"),
])
def test_parse_controls(values, kinds):
    assert parse_controls(values) == kinds


def test_parse_controls_rejects_an_unknown_kind_listing_the_valid_ones():
    with pytest.raises(UserError, match="unknown control 'shouty'; valid: gold, mismatch"):
        parse_controls(["shouty"])


def test_control_kind_and_run_default():
    assert control_kind("control:wrong-label") == "wrong-label"
    assert control_kind("openai/gpt-4o") is None and control_kind("control:nope") is None
    assert RUN_CONTROLS[0] == "gold" and len(RUN_CONTROLS) >= 3


def test_sample_dialogues_takes_whole_conversations_in_a_seeded_order():
    picked = sample_dialogues(EXAMPLES, 5, seed=3)
    convs = {ex.conversation_id for ex in picked}
    assert len(convs) == 5
    assert picked == [ex for ex in EXAMPLES if ex.conversation_id in convs]
    assert picked == sample_dialogues(EXAMPLES, 5, seed=3) != sample_dialogues(EXAMPLES, 5)


def test_sample_dialogues_can_take_a_seeded_turn_of_each():
    one = sample_dialogues(EXAMPLES, 8, seed=3, turns=1)
    whole = sample_dialogues(EXAMPLES, 8, seed=3)
    assert len(one) == 8 and len({ex.conversation_id for ex in one}) == 8
    assert {ex.conversation_id for ex in one} == {ex.conversation_id for ex in whole}
    assert one == [ex for ex in whole if ex in one]  # original order kept
    assert one == sample_dialogues(EXAMPLES, 8, seed=3, turns=1)
    # not always each dialogue's first turn
    firsts = {ex.conversation_id: ex for ex in reversed(whole)}
    assert any(ex is not firsts[ex.conversation_id] for ex in one)
    two = sample_dialogues(EXAMPLES, 8, seed=3, turns=2)
    assert set(ex.item_id for ex in one) <= set(ex.item_id for ex in two) and len(two) == 16


def test_records_are_candidate_rows_that_the_judge_reads_back(tmp_path):
    from csc_harness.contract import CANDIDATE_FIELDS
    from csc_harness.judge import load_candidates

    records = build_controls(EXAMPLES[:3])
    assert all(tuple(r.to_row()) == CANDIDATE_FIELDS for r in records)
    path = tmp_path / "controls.jsonl"
    path.write_text("".join(json.dumps(r.to_row(), ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    back = load_candidates([path])
    assert [(c.item.item_id, c.model, c.reply, c.predicted_strategy) for c in back] == [
        (r.item_id, r.model, r.reply, r.predicted_strategy) for r in records]
