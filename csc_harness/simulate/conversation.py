"""One simulated conversation: the candidate as supporter, LLM roles as the customer.

Turn order: the supporter speaks first (a CSConv dialogue opens with the agent's greeting),
then the customer's recorded or written opening message, then in turn the supporter (the
candidate, with the CSConv system prompt and ``[<strategy>] <reply>`` format, seeing only
this conversation: its own earlier replies and the simulated customer's turns), the
customer coach (the next direction) and the customer (one utterance, whether it is done).

Stops, recorded as ``end_reason`` (:data:`csc_harness.contract.END_REASONS`):
``supporter_closed`` (a reply labelled Appreciation and Closure), ``customer_ended``
(``is_dialogue_finished``), ``max_turns`` (the utterance cap, counting every utterance),
``customer_failed`` (the coach or customer gave no usable answer after retries; the reason
is ``end_detail``). A supporter reply without a valid strategy label is kept (strategy
null) and counted in ``invalid_labels``.

Every request is a pure function of the scenario, the sample index and the conversation so
far, so a conversation cut short by a crash is redone from the cache at no cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..contract import EndReason
from ..data import Utterance
from ..framework import parse_reply
from ..prompting import reply_messages
from .roles import RoleModel, ask_json, render_role, scenario_context, seed_of
from .scenarios import Scenario

if TYPE_CHECKING:
    from ..llm import Client, Response

__all__ = ["CLOSING", "COACH_FIELDS", "CUSTOMER_FIELDS", "Cast", "conversation_id", "converse"]

CLOSING = "AC"
"""Appreciation and Closure: a supporter reply with this label ends the conversation."""
COACH_FIELDS = {"direction": "string"}
CUSTOMER_FIELDS = {"text": "string", "is_dialogue_finished": "boolean", "reason": "string?"}
"""``reason`` may be empty: it only explains an end (small models often leave it blank)."""


@dataclass(frozen=True)
class Cast:
    """Who plays what in one run's conversations."""

    supporter: RoleModel
    """The candidate model (temperature and reply cap included)."""
    customer: RoleModel
    """Plays the customer coach and the customer."""
    name: str
    """The candidate's name in rows."""
    max_turns: int = 50
    guard: Callable[[], None] | None = None
    """Runs before every request and stops the run by raising (a dead local server)."""


def conversation_id(scenario_id: str, sample: int) -> str:
    """The join key of a simulated conversation across models: ``<scenario>/<sample>``."""
    return f"{scenario_id}/{sample}"


@dataclass
class _Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0

    def add(self, response: Response) -> None:
        self.calls += 1
        self.prompt_tokens += response.prompt_tokens or 0
        self.completion_tokens += response.completion_tokens or 0
        if response.cost_usd is None or self.cost_usd is None:
            self.cost_usd = None  # one unknown price makes the total unknown, never 0
        else:
            self.cost_usd += response.cost_usd


@dataclass
class _Conversation:
    scenario: Scenario
    sample: int
    cast: Cast
    client: Client
    turns: list[Utterance] = field(default_factory=list)
    supporter: _Usage = field(default_factory=_Usage)
    customer: _Usage = field(default_factory=_Usage)
    end: tuple[EndReason, str] | None = None

    def say(self, utterance: Utterance) -> None:
        self.turns.append(utterance)
        if self.end is None and len(self.turns) >= self.cast.max_turns:
            self.end = ("max_turns", f"{self.cast.max_turns} utterances")

    async def supporter_turn(self) -> None:
        from ..llm import Request

        if self.cast.guard is not None:
            self.cast.guard()
        role = self.cast.supporter
        request = Request(model=role.model, api_base=role.api_base,
                          messages=reply_messages(self.turns, self.scenario.language),
                          temperature=role.temperature, max_tokens=role.max_tokens,
                          sample=self.sample)
        response = await self.client.complete(request)
        self.supporter.add(response)
        code, reply = parse_reply(response.text)
        if code == CLOSING:
            self.end = ("supporter_closed", "Appreciation and Closure")
        self.say(Utterance("supporter", reply, code))

    async def customer_turn(self) -> None:
        role, key = self.cast.customer, f"{self.scenario.id}\x1e{self.sample}"
        seen, direction = scenario_context(self.scenario), ""
        for step, fields in (("coach", COACH_FIELDS), ("customer", CUSTOMER_FIELDS)):
            if self.cast.guard is not None:
                self.cast.guard()
            extra = {"direction": direction} if step == "customer" else {}
            messages = render_role(step, dialogue=self.turns, key=key, **seen, **extra)
            asked = await ask_json(self.client, role, messages, fields, sample=self.sample,
                                   seed=seed_of(step, key, len(self.turns)))
            for response in asked.responses:
                self.customer.add(response)
            if asked.value is None:
                self.end = ("customer_failed", f"{step}: {asked.reason}")
                return
            direction = " ".join(str(asked.value.get("direction", "")).split())
        text = " ".join(asked.value["text"].split())
        if asked.value["is_dialogue_finished"]:
            self.end = ("customer_ended",
                        " ".join(asked.value["reason"].split())[:300] or "no reason given")
        self.say(Utterance("customer", text))

    async def run(self) -> dict[str, Any]:
        await self.supporter_turn()
        if self.end is None:
            self.say(Utterance("customer", self.scenario.opening))
        while self.end is None:
            await self.supporter_turn()
            if self.end is None:
                await self.customer_turn()
        return self.row()

    def row(self) -> dict[str, Any]:
        assert self.end is not None
        cast, usage = self.cast, (self.supporter, self.customer)
        costs = [u.cost_usd for u in usage]
        return {
            "conversation_id": conversation_id(self.scenario.id, self.sample),
            "scenario_id": self.scenario.id, "sample": self.sample, "model": cast.name,
            "customer": cast.customer.model, "topic": self.scenario.topic,
            "language": self.scenario.language,
            "turns": [{"speaker": u.speaker, "text": u.text, "strategy": u.strategy}
                      for u in self.turns],
            "end_reason": self.end[0], "end_detail": self.end[1],
            "n_turns": len(self.turns),
            "supporter_turns": sum(u.speaker == "supporter" for u in self.turns),
            "invalid_labels": sum(u.speaker == "supporter" and u.strategy is None
                                  for u in self.turns),
            "max_turns": cast.max_turns,
            "usage": {"supporter": vars(self.supporter).copy(),
                      "customer": vars(self.customer).copy()},
            "prompt_tokens": sum(u.prompt_tokens for u in usage),
            "completion_tokens": sum(u.completion_tokens for u in usage),
            "cost_usd": None if None in costs else sum(costs),  # type: ignore[arg-type]
        }


async def converse(scenario: Scenario, sample: int, cast: Cast, client: Client
                   ) -> dict[str, Any]:
    """Play one conversation to its end and return its transcript row (not written)."""
    return await _Conversation(scenario, sample, cast, client).run()
