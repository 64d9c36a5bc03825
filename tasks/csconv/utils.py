"""lm-eval glue for CSConv: documents, chat prompts, result processing, aggregation.

Thin on purpose: data loading, prompts and metrics live in ``csc_harness`` so the
lm-eval task and csc-harness's own commands compute the same numbers.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import lru_cache
from typing import Any

from lm_eval.api.task import ConfigurableTask

from csc_harness import metrics
from csc_harness.data import Utterance, load_examples
from csc_harness.errors import MissingDependency
from csc_harness.framework import STRATEGIES, format_reply, parse_reply
from csc_harness.prompting import reply_messages, system_prompt, transcript


def load_docs(data: str | None = None, dialogues: int | None = None, **_: Any) -> dict:
    """``custom_dataset``: the supporter turns of ``--metadata '{"data": ...}'``,
    ``$CSCONV_DATA`` or the bundled sample, as one ``test`` split.

    ``--metadata '{"dialogues": N}'`` keeps the first N dialogues whole (lm-eval's
    own ``--limit`` counts turns and would cut a dialogue in the middle).
    """
    import datasets

    examples = load_examples(data)
    if dialogues:
        keep = set(list(dict.fromkeys(ex.conversation_id for ex in examples))[: int(dialogues)])
        examples = [ex for ex in examples if ex.conversation_id in keep]
    return {"test": datasets.Dataset.from_list([ex.to_doc() for ex in examples])}


def _context(doc: dict) -> list[Utterance]:
    return [Utterance(u["speaker"], u["text"], u["strategy"]) for u in doc["context"]]


class CSConvReplyTask(ConfigurableTask):
    """Sends the dialogue so far as real chat messages, not one flattened prompt."""

    def __init__(self, config: dict | None = None, **kwargs: Any) -> None:
        config = dict(config or {})
        config.pop("class", None)
        super().__init__(config=config, **kwargs)

    def fewshot_context(self, doc: dict, num_fewshot: int, system_instruction: str | None = None,
                        apply_chat_template: bool = False, fewshot_as_multiturn: bool = False,
                        chat_template: Any = None, gen_prefix: str | None = None) -> str:
        if num_fewshot:
            raise ValueError("csconv_reply is zero-shot: the dialogue itself is the context")
        messages = reply_messages(_context(doc), doc["language"])
        if system_instruction:
            messages[0]["content"] = f"{system_instruction}\n\n{messages[0]['content']}"
        if apply_chat_template and chat_template:
            return chat_template(messages, add_generation_prompt=True)
        return f"{messages[0]['content']}\n\n{transcript(_context(doc), doc['language'])}"


class CSConvBertScoreTask(CSConvReplyTask):
    """``csconv_reply`` plus BERTScore. bert-score is only used when the scores are
    aggregated, after every reply was generated (and paid for): its absence is reported
    here, when lm-eval builds the task, before the first request."""

    def __init__(self, config: dict | None = None, **kwargs: Any) -> None:
        require_bertscore()
        super().__init__(config=config, **kwargs)


def require_bertscore() -> None:
    """Raise :class:`MissingDependency` (with its pip command) unless bert-score is
    importable; checked without importing it (it pulls in torch: seconds)."""
    if "bert_score" in sys.modules:  # None there means "blocked" to the import system
        found = sys.modules["bert_score"] is not None
    else:
        try:
            found = importlib.util.find_spec("bert_score") is not None
        except (ImportError, ValueError):  # a broken install
            found = False
    if not found:
        raise MissingDependency("bert-score", "bertscore", "The csconv_reply_bertscore task")


def doc_to_text(doc: dict) -> str:
    """Plain-text prompt (used for logging and by backends without chat)."""
    return f"{system_prompt(doc['language'])}\n\n{transcript(_context(doc), doc['language'])}"


def doc_to_target(doc: dict) -> str:
    return format_reply(doc["strategy"], doc["reply"])


def process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    predicted, reply = parse_reply(results[0] if results else "")
    lang = doc["language"]
    return {
        "strategy_acc": 100.0 if predicted == doc["strategy"] else 0.0,
        "strategy_f1": (doc["strategy"], predicted),
        "bleu2": (doc["reply"], reply, lang),
        "bleu4": (doc["reply"], reply, lang),
        "rougeL": 100.0 * metrics.rouge_l(doc["reply"], reply, lang),
    }


def process_results_bertscore(doc: dict, results: list[str]) -> dict[str, Any]:
    scores = process_results(doc, results)
    scores["bertscore"] = scores["bleu2"]
    return scores


@lru_cache(maxsize=2)
def _bleu(items: tuple[tuple[str, str, str], ...]) -> dict[str, float]:
    refs, hyps, langs = zip(*items)
    return metrics.corpus_bleu(refs, hyps, langs)


def agg_bleu2(items: list) -> float:
    return _bleu(tuple(map(tuple, items)))["bleu2"]


def agg_bleu4(items: list) -> float:
    return _bleu(tuple(map(tuple, items)))["bleu4"]


def agg_strategy_f1(items: list) -> float:
    gold, predicted = zip(*items)
    return metrics.strategy_macro_f1(gold, predicted)


def agg_bertscore(items: list) -> float:
    refs, hyps, langs = zip(*items)
    return metrics.bertscore(refs, hyps, langs, os.environ.get("CSC_BERTSCORE_MODEL") or None)


# --- csconv_strategy_mc -------------------------------------------------------------------

CHOICES = [s.name for s in STRATEGIES]


def mc_doc_to_text(doc: dict) -> str:
    return doc_to_text(doc) + (" [" if doc["language"] != "zh" else "[")


def mc_doc_to_choice(doc: dict) -> list[str]:
    return [f"{name}]" for name in CHOICES]


def mc_doc_to_target(doc: dict) -> int:
    return [s.code for s in STRATEGIES].index(doc["strategy"])
