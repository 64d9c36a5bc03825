"""Scenarios: the simulated customers every candidate model faces.

A scenario is a persona, a goal, a situation, a topic, a language and the customer's
opening message. Two sources:

* CSConv dialogues: a planner model reads the whole recorded dialogue once and writes the
  persona, goal and situation (structured JSON); topic, language and the opening message
  (the first recorded customer utterance) come from the recording. Only the planner ever
  sees the recording.
* a user's scenarios file (JSON list or JSONL) of ``{"id"?, "persona", "topic", "goal",
  "opening", "situation"?, "language"?}``, checked with one-line errors.

``OUT/scenarios.jsonl`` holds them; a later run reuses every scenario already there (so
every model, in this run or the next, meets the same customers) and plans only new ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contract import SCENARIOS_FILE, digest
from ..data import Conversation, detect_language
from ..errors import DataError, UserError
from ..jsonl import parse_json, read_jsonl
from .roles import RoleModel, ask_json, render_role, seed_of
from .store import append_line, read_rows

if TYPE_CHECKING:
    from ..llm import Client

__all__ = ["PLANNER_FIELDS", "PlannerLimits", "Scenario", "ScenarioStore",
           "fallback_scenario", "load_scenarios_file", "plan_scenarios"]

PLANNER_FIELDS = {"persona": "string", "goal": "string", "situation": "string"}
_REQUIRED = ("persona", "topic", "goal", "opening")


@dataclass(frozen=True)
class Scenario:
    """One simulated customer. ``source`` says where it came from (a dialogue or a file)."""

    id: str
    topic: str
    language: str
    persona: str
    goal: str
    opening: str
    """The customer's first message, used verbatim so every model meets the same opening."""
    situation: str = ""
    source: str = ""
    """``dialogue:<id>`` (planned) or ``file:<path>``."""
    planner: str | None = None
    """Model that wrote persona, goal and situation; None for a user's file."""

    def customer_view(self) -> dict[str, str]:
        """The fields the customer roles see (no source, no recording)."""
        return {"topic": self.topic, "language": self.language, "persona": self.persona,
                "goal": self.goal, "situation": self.situation}

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def _opening(conv: Conversation) -> str | None:
    return next((u.text for u in conv.utterances if u.speaker == "customer"), None)


def load_scenarios_file(path: str | Path) -> list[Scenario]:
    """A user's scenarios (JSON list or JSONL); each problem is one DataError line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"scenarios file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"["):
        records = parse_json(raw, path=path)
        rows = [(None, i, r) for i, r in enumerate(records)]
    else:
        rows = [(line, i, r) for i, (line, r) in enumerate(read_jsonl(path))]
    out, seen = [], set()
    for line, index, record in rows:
        scenario = _from_record(record, str(path), index, line)
        if scenario.id in seen:
            raise DataError(f"duplicate scenario id {scenario.id!r}", path=str(path),
                            record=index, line=line, field="id")
        seen.add(scenario.id)
        out.append(scenario)
    if not out:
        raise DataError("file holds no scenarios", path=str(path))
    return out


def _from_record(record: Any, path: str, index: int, line: int | None) -> Scenario:
    def fail(message: str, field: str | None = None) -> DataError:
        return DataError(message, path=path, record=index, line=line, field=field)

    if not isinstance(record, dict):
        raise fail('expected an object {"persona", "topic", "goal", "opening"}')
    valid = ("id", "persona", "topic", "goal", "opening", "situation", "language")
    unknown = [k for k in record if k not in valid]
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}", unknown[0])
    for name in (*_REQUIRED, "situation", "id"):
        value = record.get(name)
        if (name in _REQUIRED or value is not None) and (
                not isinstance(value, str) or not value.strip()):
            raise fail("missing or empty text" if value is None
                       else f"expected a non-empty string, got {value!r}"[:120], name)
    language = record.get("language") or detect_language([record["opening"], record["goal"]])
    if language not in ("zh", "en"):
        raise fail(f"unknown language {language!r}; use 'zh' or 'en'", "language")
    texts = {k: " ".join(str(record.get(k) or "").split()) for k in valid}
    scenario_id = texts["id"] or "user-" + digest([texts[k] for k in _REQUIRED], 10)
    return Scenario(scenario_id, texts["topic"], language, texts["persona"], texts["goal"],
                    str(record["opening"]).strip(), texts["situation"], f"file:{path}")


class ScenarioStore:
    """``OUT/scenarios.jsonl``: scenarios by id, appended as they are planned."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / SCENARIOS_FILE
        self.scenarios: dict[str, Scenario] = {}
        if self.path.exists():
            valid = {f.name for f in fields(Scenario)}
            for line, obj in read_rows(self.path):
                try:
                    scenario = Scenario(**{k: v for k, v in obj.items() if k in valid})
                except TypeError as exc:
                    raise DataError(f"not a scenario row ({exc}); remove the line or use "
                                    "another --out", path=str(self.path), line=line) from None
                self.scenarios.setdefault(scenario.id, scenario)

    def add(self, scenario: Scenario) -> None:
        if scenario.id in self.scenarios:
            return
        append_line(self.path, asdict(scenario))
        self.scenarios[scenario.id] = scenario


@dataclass(frozen=True)
class PlannerLimits:
    """How much the planner reads and what a failure does. The defaults are for real
    models; the embedded demonstration model (135M parameters, on a CPU) reads only the
    dialogue's start, and a dialogue it cannot plan gets :func:`fallback_scenario` instead
    of stopping the demonstration."""

    max_utterances: int | None = None
    """Show the planner only the first N utterances (None: the whole dialogue)."""
    fallback: bool = False


def fallback_scenario(conv: Conversation, opening: str, reason: str) -> Scenario:
    """A plain scenario from the recording itself (topic and opening message) for a dialogue
    the planner could not plan; ``source`` says so."""
    zh = conv.language == "zh"
    persona = ("一位普通客户，说话简短礼貌。" if zh
               else "An ordinary customer who writes briefly and politely.")
    goal = (f"解决开场消息中的问题：{opening}" if zh
            else f"Get the problem in the opening message solved: {opening}")
    return Scenario(conv.id, conv.topic, conv.language, persona, " ".join(goal.split())[:400],
                    opening, "", f"dialogue:{conv.id} (fallback: {reason})"[:300], None)


async def plan_scenario(conv: Conversation, client: Client, planner: RoleModel,
                        limits: PlannerLimits = PlannerLimits()) -> Scenario:
    """Persona, goal and situation for one recorded dialogue, written by the planner."""
    opening = _opening(conv)
    if opening is None:
        raise DataError(f"dialogue {conv.id!r} has no customer utterance to open a "
                        "simulated conversation with")
    messages = render_role("planner", dialogue=conv.utterances[: limits.max_utterances],
                           key=conv.id, topic=conv.topic, language=conv.language)
    asked = await ask_json(client, planner, messages, PLANNER_FIELDS, sample=0,
                           seed=seed_of("planner", conv.id))
    if asked.value is None:
        if limits.fallback:
            return fallback_scenario(conv, opening, asked.reason)
        raise DataError(f"the planner could not write a scenario for dialogue {conv.id!r}: "
                        f"{asked.reason}; try another --customer model")
    value = {k: " ".join(str(asked.value[k]).split()) for k in PLANNER_FIELDS}
    return Scenario(conv.id, conv.topic, conv.language, value["persona"], value["goal"],
                    opening, value["situation"], f"dialogue:{conv.id}", planner.model)


async def plan_scenarios(conversations: Sequence[Conversation], store: ScenarioStore,
                         client: Client, planner: RoleModel, *, concurrency: int = 8,
                         limits: PlannerLimits = PlannerLimits()) -> list[Scenario]:
    """The scenarios of ``conversations``: reused from ``store``, else planned and stored."""
    slots = asyncio.Semaphore(concurrency)

    async def one(conv: Conversation) -> None:
        if conv.id in store.scenarios:
            return
        async with slots:
            store.add(await plan_scenario(conv, client, planner, limits))

    await asyncio.gather(*(one(conv) for conv in conversations))
    return [store.scenarios[conv.id] for conv in conversations]
