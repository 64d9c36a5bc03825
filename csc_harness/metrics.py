"""The paper's automatic metrics, on a 0-100 scale, for Chinese and English.

Corpus BLEU-2/4 from sacrebleu (``zh`` tokenizer for Chinese, ``13a`` for English),
ROUGE-L F1 (characters for Chinese: rouge-score's default tokenizer keeps only
``[a-z0-9]`` and would score every Chinese reply 0), strategy accuracy and macro F1.
:data:`TOKENIZATION` is stored with every result so numbers say how they were made.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from .errors import MissingDependency, UserError

TOKENIZATION = {
    "bleu": "sacrebleu corpus BLEU (exp smoothing), BLEU-2 and BLEU-4 from the same "
            "n-gram counts; tokenizer 'zh' for Chinese items, '13a' for English items",
    "rougeL": "ROUGE-L F1 averaged over items; Chinese: one token per CJK character plus "
              "lowercased ASCII letter/digit runs, punctuation dropped; English: rouge-score "
              "default tokenizer (lowercase [a-z0-9] words, no stemming)",
    "strategy": "strategy_acc = exact match of the strategy code; strategy_f1 = macro F1 "
                "over the gold strategies present; a missing strategy counts as wrong",
    "scale": "0-100",
}


@dataclass(frozen=True)
class Scored:
    """One candidate reply against its gold turn."""

    gold_strategy: str
    predicted_strategy: str | None
    reference: str
    reply: str
    language: str


# --- tokenizers -------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _zh_splitter() -> re.Pattern[str]:
    """sacrebleu's TokenizerZh character set as one regex class.

    sacrebleu tests each character against its ranges one by one (about 0.3 ms per
    reply); the same set compiled once gives identical tokens ~20x faster, which
    the 25,810-turn benchmark needs. ``tests/test_metrics.py`` checks the identity.
    """
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    is_zh = TokenizerZh._is_chinese_char
    ranges, start = [], None
    for cp in range(0x10000):
        inside = is_zh(chr(cp))
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0xFFFF))
    cls = "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)
    return re.compile(f"([{cls}])")


@lru_cache(maxsize=1)
def _post_tokenizer():
    from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

    return TokenizerRegexp()


def bleu_tokens(text: str, language: str) -> str:
    """Tokenize as sacrebleu's ``zh`` (Chinese) or ``13a`` (English) tokenizer would."""
    if language == "zh":
        return _post_tokenizer()(_zh_splitter().sub(r" \1 ", text.strip()))
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text)


_ROUGE_ZH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+")


def rouge_tokens(text: str, language: str) -> list[str]:
    if language == "zh":
        return _ROUGE_ZH.findall(text.lower())
    from rouge_score.tokenize import tokenize

    return tokenize(text, None)


# --- metrics ------------------------------------------------------------------------------

def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004).

    rouge-score's dynamic-programming table is pure Python and too slow for
    CSConv's 25,810 turns; this gives the same lengths (checked in the tests).
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(reference: str, reply: str, language: str) -> float:
    """ROUGE-L F1 of one reply, 0-1."""
    ref, hyp = rouge_tokens(reference, language), rouge_tokens(reply, language)
    lcs = lcs_length(ref, hyp)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


BLEU_FIELDS = ("sys_len", "ref_len", "match1", "match2", "match3", "match4",
               "total1", "total2", "total3", "total4")
"""The n-gram statistics BLEU is computed from, in the order of :func:`bleu_statistics`."""


def _bleu_metric():
    from sacrebleu.metrics import BLEU

    # force: the input is tokenized on purpose (silences "forgot to detokenize")
    return BLEU(tokenize="none", max_ngram_order=4, force=True)


def bleu_from_statistics(stats: Sequence[float]) -> dict[str, float]:
    """BLEU-2 and BLEU-4 (0-100, exp smoothing) from summed :data:`BLEU_FIELDS` counts.

    Corpus BLEU is not a mean of per-item scores: summing the items' statistics (of any
    subset or resample) and calling this gives that set's corpus BLEU.
    """
    from sacrebleu.metrics import BLEU

    sys_len, ref_len = int(stats[0]), int(stats[1])
    counts, totals = [int(c) for c in stats[2:6]], [int(t) for t in stats[6:10]]

    def at(order: int) -> float:
        return BLEU.compute_bleu(counts[:order], totals[:order], sys_len, ref_len,
                                 smooth_method="exp", max_ngram_order=order).score

    return {"bleu2": at(2), "bleu4": at(4)}


def bleu_statistics(references: Sequence[str], replies: Sequence[str],
                    languages: Sequence[str]) -> list[tuple[int, ...]]:
    """Per item, the :data:`BLEU_FIELDS` counts (tokenized as :func:`corpus_bleu` does)."""
    from sacrebleu.metrics import BLEU

    # effective_order changes sentence scores only (silencing sacrebleu's advice to use
    # it); the raw counts read here are the same either way.
    metric = BLEU(tokenize="none", max_ngram_order=4, force=True, effective_order=True)
    out = []
    for ref, hyp, lang in zip(references, replies, languages):
        s = metric.sentence_score(bleu_tokens(hyp, lang), [bleu_tokens(ref, lang)])
        out.append((s.sys_len, s.ref_len, *s.counts, *s.totals))
    return out


def corpus_bleu(references: Sequence[str], replies: Sequence[str],
                languages: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-2 and BLEU-4 (0-100), each item tokenized for its own language."""
    if not replies:
        return {"bleu2": math.nan, "bleu4": math.nan}
    hyps = [bleu_tokens(h, lang) for h, lang in zip(replies, languages)]
    refs = [bleu_tokens(r, lang) for r, lang in zip(references, languages)]
    stats = _bleu_metric().corpus_score(hyps, [refs])
    return bleu_from_statistics([stats.sys_len, stats.ref_len, *stats.counts, *stats.totals])


def strategy_accuracy(gold: Sequence[str], predicted: Sequence[str | None]) -> float:
    if not gold:
        return math.nan
    return 100.0 * sum(g == p for g, p in zip(gold, predicted)) / len(gold)


def strategy_macro_f1(gold: Sequence[str], predicted: Sequence[str | None]) -> float:
    """Macro F1 over the strategies present in the gold labels (0-100).

    A prediction of a strategy absent from the gold set still costs recall of the
    true class; a missing prediction (None) is a false negative and nothing else.
    """
    classes = sorted(set(gold))
    if not classes:
        return math.nan
    f1s = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, predicted))
        fp = sum(g != c and p == c for g, p in zip(gold, predicted))
        fn = sum(g == c and p != c for g, p in zip(gold, predicted))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return 100.0 * sum(f1s) / len(f1s)


def bertscore(references: Sequence[str], replies: Sequence[str], languages: Sequence[str],
              model: str | None = None) -> float:
    """Mean BERTScore F1 (0-100); fails loudly when the package or model is missing.

    Without ``model``, bert-score's default model for each language is used. The
    model must be available locally when offline: a missing model is an error,
    never a silent 0.
    """
    try:
        import bert_score
    except ImportError:
        raise MissingDependency("bert-score", "bertscore", "BERTScore") from None
    total, count = 0.0, 0
    for lang in sorted(set(languages)):
        idx = [i for i, x in enumerate(languages) if x == lang]
        try:
            _, _, f1 = bert_score.score(
                [replies[i] for i in idx], [references[i] for i in idx],
                lang=lang, model_type=model, verbose=False,
            )
        except OSError as exc:
            raise UserError(
                f"BERTScore model {model or 'default for ' + lang!r} is not available "
                f"({str(exc).splitlines()[0]}); download it once online or set "
                "CSC_BERTSCORE_MODEL to a local model folder"
            ) from None
        total += float(f1.sum())
        count += len(idx)
    return 100.0 * total / count if count else math.nan


def score(items: Sequence[Scored], *, with_bertscore: bool = False,
          bertscore_model: str | None = None) -> dict[str, float]:
    """All automatic metrics over a set of scored items (0-100)."""
    refs = [it.reference for it in items]
    hyps = [it.reply for it in items]
    langs = [it.language for it in items]
    gold = [it.gold_strategy for it in items]
    pred = [it.predicted_strategy for it in items]
    result = {
        "strategy_acc": strategy_accuracy(gold, pred),
        "strategy_f1": strategy_macro_f1(gold, pred),
        **corpus_bleu(refs, hyps, langs),
        "rougeL": 100.0 * sum(map(rouge_l, refs, hyps, langs)) / len(items)
        if items else math.nan,
    }
    if with_bertscore:
        result["bertscore"] = bertscore(refs, hyps, langs, bertscore_model)
    return result
