"""Judgment rows from judge answers: the judge side of :mod:`csc_harness.contract`.

The fields, identities and statuses are defined there; this module only fills them in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..contract import IDENTITY_FIELDS, PAIRWISE_FIELDS, ROW_FIELDS, row_key
from .parse import Verdict, parse_pairwise, parse_verdict
from .weighted import weighted_score

if TYPE_CHECKING:
    from ..llm import Response
    from .config import JudgeConfig
    from .plan import Job

__all__ = ["IDENTITY_FIELDS", "PAIRWISE_FIELDS", "ROW_FIELDS", "error_rows", "identity",
           "judgment_rows", "row_key"]

_WINNER = {("A", "ab"): "a", ("B", "ab"): "b", ("A", "ba"): "b", ("B", "ba"): "a"}


def identity(*values: Any) -> tuple:
    """A row identity from values in :data:`IDENTITY_FIELDS` order."""
    return tuple(values)


def _base(job: Job, config: JudgeConfig, dim: str) -> dict[str, Any]:
    cand = job.candidates[0]
    item = cand.item
    pairwise = job.pairwise
    scale = job.group.rubric.scale
    embedded = set(config.embedded_models)
    return {
        "item_id": item.item_id, "conversation_id": item.conversation_id,
        "turn_index": item.turn_index, "model": job.model, "judge": job.judge,
        "dimension": dim, "prompt_id": job.prompt_id, "sample": job.sample,
        "score": None, "weighted_score": None, "rationale": None, "status": "error",
        "raw": "", "scale_min": None if pairwise or not scale else scale[0],
        "scale_max": None if pairwise or not scale else scale[1],
        "prompt_tokens": None, "completion_tokens": None, "cost_usd": None,
        "latency_s": None, "response_model": None, "cached": False,
        "mode": "joint" if job.group.mode == "joint" else "separate",
        "reference_guided": config.reference_guided, "variant": job.variant,
        "kind": "pairwise" if pairwise else "absolute", "stage": item.stage,
        "strategy": item.strategy,
        "predicted_strategy": None if pairwise else cand.predicted_strategy,
        "topic": item.topic, "language": item.language,
        "reply": None if pairwise else cand.reply,
        "embedded": job.judge in embedded or any(c.model in embedded for c in job.candidates),
        "input_id": job.input_id, "cache_key": None, "deployment": None,
    }


def _pairwise_fields(row: dict[str, Any], job: Job, verdict: Verdict | None) -> None:
    row["model_a"], row["model_b"] = job.pair
    row["order"] = job.order
    winner = verdict.winner if verdict is not None else None
    row["winner"] = "tie" if winner == "tie" else _WINNER.get((winner, job.order))  # type: ignore[arg-type]


def _provenance(row: dict[str, Any], response: Response, first: bool) -> None:
    row["raw"] = response.text or response.refusal or ""
    row["cache_key"] = response.key
    row["response_model"] = response.response_model
    row["deployment"] = response.deployment
    row["cached"] = response.cached
    if first:
        row["prompt_tokens"], row["completion_tokens"] = (response.prompt_tokens,
                                                          response.completion_tokens)
        row["cost_usd"], row["latency_s"] = response.cost_usd, round(response.latency_s, 4)
    else:
        row["prompt_tokens"] = 0 if response.prompt_tokens is not None else None
        row["completion_tokens"] = 0 if response.completion_tokens is not None else None
        row["cost_usd"] = 0.0 if response.cost_usd is not None else None
        row["latency_s"] = 0.0


def judgment_rows(job: Job, config: JudgeConfig, response: Response) -> tuple[list[dict], list[Verdict]]:
    """Rows (one per dimension of the job) and the verdicts they came from."""
    refusal = response.refusal
    quoted = [c.reply for c in job.candidates]
    structured = response.structured in ("json_schema", "json_object")
    if job.pairwise:
        verdict = parse_pairwise(response.text, nonce=job.nonce, refusal=refusal,
                                 quoted=quoted, structured=structured)
        row = _base(job, config, job.group.dimensions[0])
        _provenance(row, response, True)
        row["status"], row["rationale"] = verdict.status, verdict.rationale
        _pairwise_fields(row, job, verdict if verdict.status == "ok" else None)
        return [row], [verdict]
    scale = job.group.rubric.scale
    assert scale is not None
    verdicts = parse_verdict(response.text, job.group.dimensions, scale, nonce=job.nonce,
                             refusal=refusal, quoted=quoted, structured=structured)
    rows = []
    for i, dim in enumerate(job.group.dimensions):
        verdict = verdicts[dim]
        row = _base(job, config, dim)
        _provenance(row, response, i == 0)
        row["status"], row["rationale"] = verdict.status, verdict.rationale
        if verdict.status == "ok":
            row["score"] = verdict.score
            if config.logprobs and response.top_logprobs:
                row["weighted_score"] = weighted_score(response.text, response.top_logprobs,
                                                       verdict.span, scale)
        rows.append(row)
    return rows, [verdicts[d] for d in job.group.dimensions]


def error_rows(job: Job, config: JudgeConfig, message: str) -> list[dict]:
    """Rows for a call that failed after retries: status ``error``, the message as raw."""
    rows = []
    for dim in job.group.dimensions:
        row = _base(job, config, dim)
        row["raw"] = message
        if job.pairwise:
            _pairwise_fields(row, job, None)
        rows.append(row)
    return rows
