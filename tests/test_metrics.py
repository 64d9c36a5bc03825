import math
import random

import pytest
import yaml
from rouge_score.rouge_scorer import _score_lcs
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

from csc_harness import metrics
from csc_harness.errors import MissingDependency
from csc_harness.metrics import Scored


def test_rouge_l_chinese_is_character_level_not_zero():
    # rouge-score's own tokenizer would give 0 here.
    assert metrics.rouge_l("您好，请问", "您好", "zh") == pytest.approx(2 / 3)
    # placeholder brackets are punctuation: 6 reference tokens, 3 matched
    assert metrics.rouge_l("请稍等[金额]元", "请稍等", "zh") == pytest.approx(2 / 3)


def test_rouge_l_english_uses_words():
    assert metrics.rouge_l("The card is blocked.", "the card was blocked", "en") == 0.75
    assert metrics.rouge_l("Hello", "", "en") == 0.0


def test_lcs_matches_rouge_score_reference_implementation():
    rng = random.Random(7)
    for _ in range(500):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 90))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 90))]
        expected = _score_lcs(a, b).fmeasure
        got = metrics.rouge_l(" ".join(a), " ".join(b), "en")
        assert got == pytest.approx(expected, abs=1e-12)


def test_zh_bleu_tokens_equal_sacrebleu_tokenizer():
    tokenizer = TokenizerZh()
    lines = ["您好，请问您的[手机号码]是多少？Card 1234 OK.", "“好的”——没问题…", "ＡＢＣ全角 test-case 3.5%",
             "年化收益为3.2%。", "  前后空格  "]
    for line in lines:
        assert metrics.bleu_tokens(line, "zh") == tokenizer(line)


def test_bleu_english_hand_computed():
    result = metrics.corpus_bleu(["a b c d"], ["a b c e"], ["en"])
    # precisions 3/4, 2/3 (BP = 1); BLEU-4 adds 1/2 and exp-smoothed 1/(2*1) for 4-grams
    assert result["bleu2"] == pytest.approx(100 * math.sqrt(0.75 * 2 / 3))
    assert result["bleu4"] == pytest.approx(100 * (0.75 * 2 / 3 * 0.5 * 0.5) ** 0.25)


def test_bleu_chinese_hand_computed_with_brevity_penalty():
    result = metrics.corpus_bleu(["您好请问"], ["您好请"], ["zh"])
    assert result["bleu2"] == pytest.approx(100 * math.exp(1 - 4 / 3))


def test_perfect_replies_score_100_mixed_languages():
    items = [Scored("GT", "GT", "您好，很高兴为您服务。", "您好，很高兴为您服务。", "zh"),
             Scored("PR", "PR", "Which card is it?", "Which card is it?", "en")]
    assert metrics.score(items) == pytest.approx(
        {"strategy_acc": 100.0, "strategy_f1": 100.0, "bleu2": 100.0, "bleu4": 100.0,
         "rougeL": 100.0})


def test_strategy_accuracy_and_macro_f1_hand_computed():
    gold, pred = ["GT", "GT", "PR", "PR"], ["GT", "PR", "PR", None]
    assert metrics.strategy_accuracy(gold, pred) == 50.0
    # GT: tp1 fp0 fn1 -> 2/3; PR: tp1 fp1 fn1 -> 1/2
    assert metrics.strategy_macro_f1(gold, pred) == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)


def test_empty_input_is_nan_not_zero():
    assert math.isnan(metrics.strategy_accuracy([], []))
    assert math.isnan(metrics.corpus_bleu([], [], [])["bleu2"])


def test_bertscore_without_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "bert_score", None)
    with pytest.raises(MissingDependency, match=r"pip install 'csc-harness\[bertscore\]'"):
        metrics.bertscore(["a"], ["a"], ["en"])


def test_task_config_records_the_tokenization(pytestconfig):
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda _loader, node: node.value)
    path = pytestconfig.rootpath / "tasks" / "csconv" / "csconv_reply.yaml"
    config = yaml.load(path.read_text(), Loader=Loader)
    for key in ("bleu", "rougeL", "strategy"):
        assert config["metadata"][key] == metrics.TOKENIZATION[key]
    assert config["generation_kwargs"]["until"] == []
