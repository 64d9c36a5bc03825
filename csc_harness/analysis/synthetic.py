"""Synthetic judgment rows that follow the row contract, for tests, demos and benchmarks.

Each model has a true quality; a judged score is that quality plus a dialogue effect plus
noise, rounded onto the scale, so leaderboards built from these rows have a known order.
Nothing here is a quality estimate of anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..framework import STRATEGIES

DIMENSIONS = ("strategy_adherence", "empathy", "problem_resolution")
TOPICS = ("账户交易", "产品咨询", "技术故障", "投诉处理", "营销活动", "风控安全", "财务规划", "其他")


def synthetic_rows(
    models: Sequence[str] = ("model-a", "model-b", "model-c"),
    *,
    dialogues: int = 20,
    turns: int | Sequence[int] = 5,
    dimensions: Sequence[str] = DIMENSIONS,
    judges: Sequence[str] = ("judge-x",),
    quality: Sequence[float] | None = None,
    samples: int = 1,
    invalid_rate: float = 0.02,
    seed: int = 0,
    language: str = "zh",
    embedded: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield absolute judgment rows: models x dialogues x turns x dimensions x judges x samples.

    ``turns`` is the number of supporter turns per dialogue, or one number per dialogue.
    ``quality`` is each model's mean on the 1-5 scale (default: evenly spaced from 4.2 down).
    """
    rng = np.random.default_rng(seed)
    quality = list(quality) if quality is not None else list(
        np.linspace(4.2, 2.8, len(models)) if len(models) > 1 else [3.5])
    effects = rng.normal(0.0, 0.4, size=dialogues)
    codes = [s.code for s in STRATEGIES]
    stages = [(s.default_stage.value if s.default_stage else "Exploring") for s in STRATEGIES]
    per_dialogue = [turns] * dialogues if isinstance(turns, int) else list(turns)
    for d in range(dialogues):
        conv = f"conv{d:05d}"
        topic = TOPICS[d % len(TOPICS)]
        for t in range(per_dialogue[d]):
            k = (d + t) % len(codes)
            meta = {"conversation_id": conv, "turn_index": 2 * t + 1,
                    "item_id": f"{conv}:{2 * t + 1}", "stage": stages[k],
                    "strategy": codes[k], "topic": topic, "language": language}
            for m, model in enumerate(models):
                reply = "您好" * int(rng.integers(3, 30))
                for judge in judges:
                    for dim in dimensions:
                        base = quality[m] + effects[d]
                        for s in range(samples):
                            yield _row(rng, meta, model, judge, dim, s, base, reply,
                                       invalid_rate, embedded)


def _row(rng, meta, model, judge, dim, sample, base, reply, invalid_rate, embedded):
    ok = rng.random() >= invalid_rate
    score = float(np.clip(np.rint(base + rng.normal(0.0, 0.7)), 1, 5)) if ok else None
    return {
        "kind": "absolute", **meta, "model": model, "judge": judge, "dimension": dim,
        "prompt_id": f"{dim}-v1", "sample": sample, "score": score,
        "weighted_score": score, "rationale": "synthetic", "status": "ok" if ok else "invalid",
        "raw": "" if ok else "no verdict", "scale_min": 1, "scale_max": 5,
        "prompt_tokens": 400, "completion_tokens": 60, "cost_usd": None, "latency_s": 0.5,
        "response_model": judge, "mode": "separate", "reference_guided": False,
        "variant": "default", "predicted_strategy": meta["strategy"], "reply": reply,
        "embedded": embedded,
    }


def write_jsonl(rows: Iterator[dict[str, Any]], path: str | Path) -> int:
    """Write rows as JSONL (creating folders); returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def absolute_row(**fields: Any) -> dict[str, Any]:
    """One valid absolute judgment row; keyword arguments override any field."""
    row: dict[str, Any] = {
        "kind": "absolute", "item_id": "d1:1", "conversation_id": "d1", "turn_index": 1,
        "model": "model-a", "judge": "judge-x", "dimension": "empathy", "prompt_id": "p1",
        "sample": 0, "score": 4.0, "weighted_score": 4.0, "rationale": "fine",
        "status": "ok", "raw": "Score: 4", "scale_min": 1, "scale_max": 5,
        "prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.001, "latency_s": 0.1,
        "response_model": "judge-x", "mode": "separate", "reference_guided": False,
        "variant": "default", "stage": "Connecting", "strategy": "GT",
        "predicted_strategy": "GT", "topic": "产品咨询", "language": "zh", "reply": "您好",
        "embedded": False,
    }
    row.update(fields)
    return row


def pairwise_row(**fields: Any) -> dict[str, Any]:
    """One valid pairwise judgment row; keyword arguments override any field."""
    row: dict[str, Any] = {
        "kind": "pairwise", "item_id": "d1:1", "conversation_id": "d1",
        "model": "model-a vs model-b", "model_a": "model-a", "model_b": "model-b",
        "order": "ab", "winner": "a", "judge": "judge-x", "dimension": "empathy",
        "prompt_id": "pw1", "sample": 0, "status": "ok", "rationale": "", "raw": "A",
        "variant": "default", "embedded": False,
    }
    row.update(fields)
    if "model" not in fields:  # the identity names the pair, as the judge writes it
        row["model"] = f"{row['model_a']} vs {row['model_b']}"
    return row
