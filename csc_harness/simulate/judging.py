"""Judging whole simulated conversations with the one judge runner.

A transcript becomes a :class:`~csc_harness.judge.candidates.Candidate` whose item is a
:class:`ConversationItem`: the whole transcript as the dialogue, the customer's goal for
the rubric, no turn index, stage or gold. The runner then renders, caches, parses and
writes rows exactly as for turns (same delimiters, statuses, resume); the rows carry
``conversation_id`` (= ``item_id`` = ``<scenario>/<sample>``, shared by every model that
met the same customer, so comparisons are paired) and ``turn_index`` null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import Example, Utterance
from ..judge import Candidate, JudgeConfig, run_judgments
from ..profiles import EMBEDDED
from .scenarios import ScenarioStore

if TYPE_CHECKING:
    from ..llm import Client

__all__ = ["ConversationItem", "conversation_candidates", "judge_transcripts"]


@dataclass(frozen=True)
class ConversationItem(Example):
    """A whole conversation as a judge item (``turn_index``, ``stage``, gold are None)."""

    goal: str = ""
    """What the simulated customer wanted: the judge sees it, the supporter never did."""

    def to_doc(self) -> dict[str, Any]:
        return super().to_doc() | {"goal": self.goal}


def conversation_candidates(rows: Sequence[dict[str, Any]], goals: dict[str, str]
                            ) -> list[Candidate]:
    """One candidate per transcript row; ``goals`` maps scenario id to the customer's goal."""
    out = []
    for row in rows:
        turns = tuple(Utterance(t["speaker"], t["text"], t.get("strategy"))
                      for t in row["turns"])
        item = ConversationItem(
            item_id=row["conversation_id"], conversation_id=row["conversation_id"],
            turn_index=None, context=turns, strategy=None, reply="",  # type: ignore[arg-type]
            stage=None, topic=row["topic"], language=row["language"],  # type: ignore[arg-type]
            goal=goals.get(row["scenario_id"], ""))
        out.append(Candidate(item, row["model"], "", None, f"transcripts:{row['model']}"))
    return out


async def judge_transcripts(rows: Sequence[dict[str, Any]], *, judges: Sequence[str],
                            api_base: str | None, out: Path, client: Client,
                            variants: Sequence[str] = ("conversation",),
                            embedded: bool = False, progress: bool | None = None
                            ) -> dict[str, Any]:
    """Judge transcript rows with each rubric variant, each into its own folder
    ``out/<variant>/`` (``judgments.jsonl`` + ``run.json``), so a second variant never
    overwrites the first one's run record.

    The embedded judge answers score-only (it is too small to reason usefully). Returns a
    summary per variant; provider failures that end a run propagate as the runner raises
    them, ``error`` rows are retried by the next run.
    """
    goals = {s.id: s.goal for s in ScenarioStore(out.parent).scenarios.values()}
    candidates = conversation_candidates(rows, goals)
    summary: dict[str, Any] = {}
    for variant in variants:
        config = JudgeConfig(judges=tuple(judges), mode="joint", variant=variant,
                             api_base=api_base,
                             embedded_models=(EMBEDDED.model, EMBEDDED.alias),
                             verdict=EMBEDDED.judge_verdict if embedded else None)  # type: ignore[arg-type]
        result = await run_judgments(config, candidates, out / variant, client=client,
                                     progress=progress)
        summary[variant] = {"dir": f"{out.name}/{variant}", "remaining": result.remaining,
                            "errors": result.errors, "message": result.message}
    return summary
