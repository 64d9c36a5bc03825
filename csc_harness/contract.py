"""The one contract for rows and files: every producer writes it, every reader reads it.

Judging writes judgment rows, generation writes candidate rows, analysis and ablation read
both; all of them import the names below instead of spelling fields, statuses or file
names themselves. Only the standard library is imported, so any layer may use it.

Judgment rows (one JSON object per line of ``OUT/judgments.jsonl``)
-------------------------------------------------------------------
- identity (:data:`IDENTITY_FIELDS`): the slot a row fills, ``kind, item_id, model, judge,
  dimension, prompt_id, sample, variant, mode, reference_guided, order``. A later row with
  the same identity replaces an earlier one; readers and writers compute it with
  :func:`row_key` and nothing else.
- ``input_id``: a digest of everything that was judged and how (reply, claimed strategy,
  the item's context and gold, prompt, judge settings). A slot whose row has another
  ``input_id`` than the current input is stale: the judge runner judges it anew and moves
  the old row to ``OUT/superseded.jsonl``.
- ``cache_key``: the provider cache key of the exact request, so any number can be traced
  to its prompt and answer (``csc-harness`` cache files store both under that key).
- verdict: ``score`` (non-null exactly when ``status == "ok"``, on ``scale_min..scale_max``),
  ``weighted_score``, ``rationale``, ``status`` (:data:`STATUSES`), ``raw``.
- provenance: ``prompt_tokens, completion_tokens, cost_usd`` (null = unknown, never 0 for
  unknown), ``latency_s, response_model, cached``, ``deployment`` (the ``--models``
  deployment that answered; null outside a model list).
- item: ``conversation_id, turn_index, stage, strategy, topic, language``; candidate:
  ``reply, predicted_strategy``; ``embedded`` (judge or candidate is the bundled model).

Pairwise rows (``kind == "pairwise"``) add ``model_a, model_b, order`` and ``winner``
(``a``/``b`` names model_a/model_b, not a position); their ``model`` is ``"<a> vs <b>"``.
Joint mode: one call yields one row per dimension; the call's tokens, cost and latency sit
on the first dimension's row and the others carry 0, so sums over rows are exact.

Candidate rows (``candidates.jsonl``): :data:`CANDIDATE_FIELDS`, one per (item, model).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "CANDIDATES_FILE", "CANDIDATES_SOURCE_FILE", "CANDIDATE_FIELDS", "CandidateRow", "END_REASONS",
    "SCENARIOS_FILE", "TRANSCRIPTS_FILE", "FIELD_TYPES", "IDENTITY_FIELDS",
    "JUDGMENTS_FILE", "KINDS", "LANGUAGES", "LOCK_FILE", "METRICS_FILE", "MODES", "ORDERS",
    "PAIRWISE_FIELDS", "REQUIRED", "ROW_FIELDS", "RUN_FILE", "RUN_KEYS", "SETTINGS",
    "STATUSES", "SUPERSEDED_FILE", "WINNERS", "digest", "row_key",
]

# -- file names -------------------------------------------------------------------------
JUDGMENTS_FILE = "judgments.jsonl"
SUPERSEDED_FILE = "superseded.jsonl"
CANDIDATES_FILE = "candidates.jsonl"
CANDIDATES_SOURCE_FILE = "candidates.source.json"
"""Who answered the candidates beside it (model, endpoint, generation settings)."""
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
LOCK_FILE = ".csc-harness.lock"
SCENARIOS_FILE = "scenarios.jsonl"
"""Simulated customers (persona, goal, opening message), one per line, reused by every run."""
TRANSCRIPTS_FILE = "transcripts.jsonl"
"""Whole simulated conversations, one row per (scenario, model, sample); append-only."""

# -- fixed sets ---------------------------------------------------------------------------
Status = Literal["ok", "invalid", "refused", "error"]
STATUSES: tuple[str, ...] = ("ok", "invalid", "refused", "error")
KINDS: tuple[str, ...] = ("absolute", "pairwise")
MODES: tuple[str, ...] = ("joint", "separate")
ORDERS: tuple[str, ...] = ("ab", "ba")
WINNERS: tuple[str, ...] = ("a", "b", "tie")
LANGUAGES: tuple[str, ...] = ("zh", "en")
EndReason = Literal["supporter_closed", "customer_ended", "max_turns", "customer_failed"]
END_REASONS: tuple[str, ...] = ("supporter_closed", "customer_ended", "max_turns",
                                "customer_failed")
"""Why a simulated conversation ended: the supporter closed (Appreciation and Closure), the
customer said it was done, the utterance cap, or the customer role gave no usable answer."""
Setting = Literal["reference", "generated"]
SETTINGS: tuple[str, ...] = ("reference", "generated")

# -- judgment rows ------------------------------------------------------------------------
ROW_FIELDS: tuple[str, ...] = (
    "item_id", "conversation_id", "turn_index", "model", "judge", "dimension", "prompt_id",
    "sample", "score", "weighted_score", "rationale", "status", "raw", "scale_min",
    "scale_max", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s",
    "response_model", "cached", "mode", "reference_guided", "variant", "kind", "stage",
    "strategy", "predicted_strategy", "topic", "language", "reply", "embedded",
    "input_id", "cache_key", "deployment",
)
PAIRWISE_FIELDS: tuple[str, ...] = ROW_FIELDS + ("model_a", "model_b", "order", "winner")
IDENTITY_FIELDS: tuple[str, ...] = ("kind", "item_id", "model", "judge", "dimension",
                                    "prompt_id", "sample", "variant", "mode",
                                    "reference_guided", "order")
IDENTITY_DEFAULTS: dict[str, Any] = {"kind": "absolute", "sample": 0, "variant": "default",
                                     "prompt_id": ""}
"""What an absent identity field means (rows written by hand or by older versions)."""

FieldType = Literal["str", "int", "number", "bool"]
FIELD_TYPES: dict[str, tuple[FieldType, tuple[str, ...] | None]] = {
    "item_id": ("str", None), "conversation_id": ("str", None), "turn_index": ("int", None),
    "model": ("str", None), "judge": ("str", None), "dimension": ("str", None),
    "prompt_id": ("str", None), "sample": ("int", None), "score": ("number", None),
    "weighted_score": ("number", None), "rationale": ("str", None),
    "status": ("str", STATUSES), "raw": ("str", None), "scale_min": ("int", None),
    "scale_max": ("int", None), "prompt_tokens": ("int", None),
    "completion_tokens": ("int", None), "cost_usd": ("number", None),
    "latency_s": ("number", None), "response_model": ("str", None), "cached": ("bool", None),
    "mode": ("str", MODES), "reference_guided": ("bool", None), "variant": ("str", None),
    "kind": ("str", KINDS), "stage": ("str", None), "strategy": ("str", None),
    "predicted_strategy": ("str", None), "topic": ("str", None),
    "language": ("str", LANGUAGES), "reply": ("str", None), "embedded": ("bool", None),
    "input_id": ("str", None), "cache_key": ("str", None), "deployment": ("str", None),
    "model_a": ("str", None),
    "model_b": ("str", None), "order": ("str", ORDERS), "winner": ("str", WINNERS),
}
"""Type and allowed values of every field; every field is nullable unless in REQUIRED."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "absolute": ("item_id", "conversation_id", "model", "judge", "dimension", "status",
                 "scale_min", "scale_max"),
    "pairwise": ("item_id", "judge", "dimension", "status", "model_a", "model_b", "order"),
}
"""Fields a reader refuses a row without, by kind."""


def row_key(row: Mapping[str, Any]) -> tuple:
    """The identity of a row: its values of :data:`IDENTITY_FIELDS`, absent ones defaulted."""
    get = row.get
    return tuple(get(name, IDENTITY_DEFAULTS.get(name)) for name in IDENTITY_FIELDS)


def digest(value: Any, size: int = 16) -> str:
    """A short content hash of canonical JSON (stable across runs and Python versions)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:size]


# -- candidate rows -----------------------------------------------------------------------
CANDIDATE_FIELDS: tuple[str, ...] = ("item_id", "model", "reply", "raw", "predicted_strategy",
                                     "setting")


@dataclass(frozen=True)
class CandidateRow:
    """One model answer to one supporter turn: a line of ``candidates.jsonl``.

    ``reply`` is the answer without its strategy label; ``raw`` the whole answer, kept so
    it can be re-parsed without new calls; ``predicted_strategy`` the strategy code parsed
    from it (None without a valid label).
    """

    item_id: str
    model: str
    reply: str
    raw: str
    predicted_strategy: str | None
    setting: Setting

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


# -- run.json -----------------------------------------------------------------------------
RUN_KEYS: tuple[str, ...] = (
    "command", "status", "stop_reason", "message", "started_at", "updated_at", "config",
    "client", "versions", "prompts", "plan", "session", "remaining", "totals", "outputs",
    "notes",
)
"""Top-level keys of a judge ``run.json``; ``started_at`` is when the folder's run began."""
