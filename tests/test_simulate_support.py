"""Shared fakes for the simulate tests: a stub server playing every role by its prompt."""

from __future__ import annotations

import json
from collections.abc import Callable

from csc_harness.llm import StubReply

PLANNER = "You design test customers"
COACH = "You coach an actor"
CUSTOMER = "You are a customer talking"
JUDGE = "Grade the agent's side"


def role_of(body: dict) -> str:
    text = "\n".join(str(m.get("content", "")) for m in body["messages"])
    for marker, role in ((PLANNER, "planner"), (COACH, "coach"), (CUSTOMER, "customer"),
                         (JUDGE, "judge")):
        if marker in text:
            return role
    return "supporter"


def n_turns(body: dict) -> int:
    """Utterances in the conversation the request shows (supporter: chat messages)."""
    if role_of(body) == "supporter":
        return sum(m["role"] in ("user", "assistant") for m in body["messages"]
                   if not str(m["content"]).startswith(("(", "（"))) 
    text = body["messages"][-1]["content"]
    return text.count("\nYou: ") + text.count("\nAgent: ")


def scripted(supporter: Callable[[dict], str] | None = None, *,
             finished_after: int | None = None, customer: str | None = None
             ) -> Callable[[dict], StubReply | str]:
    """A responder: planner/coach/customer/judge answer valid JSON; the supporter answers
    ``supporter(body)`` (default: Greeting first, then Problem Refinement). The customer
    says it is finished once the conversation holds ``finished_after`` utterances."""

    def respond(body: dict) -> StubReply | str:
        role = role_of(body)
        if role == "planner":
            return json.dumps({"persona": "A busy teacher, polite but impatient.",
                               "goal": "Get the missing transfer found.",
                               "situation": "Sent money yesterday; it has not arrived."})
        if role == "coach":
            return json.dumps({"direction": "Answer the question and ask when it arrives."})
        if role == "customer":
            if customer is not None:
                return customer
            done = finished_after is not None and n_turns(body) + 1 >= finished_after
            return json.dumps({"text": "OK, the number is [手机号码].",
                               "is_dialogue_finished": done, "reason": "goal met" if done
                               else "still waiting"})
        if role == "judge":
            return json.dumps(judge_answer(body))
        if supporter is not None:
            return supporter(body)
        first = not any(m["role"] == "assistant" for m in body["messages"])
        return "[Greeting] Hello, how can I help?" if first else \
            "[Problem Refinement] When did you send it?"

    return respond


def judge_answer(body: dict) -> dict:
    """A valid verdict for whichever rubric the request's schema asks (its dimensions and
    the scale's top score); the default rubric's three dimensions without a schema."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if not schema:
        return {d: {"rationale": "fine", "score": 4}
                for d in ("problem_resolution", "strategy_adherence", "empathy")}
    out = {}
    for name, spec in schema["properties"].items():
        score = spec.get("properties", {}).get("score", {})
        top = score.get("maximum", (score.get("enum") or [4])[-1])
        out[name] = {"rationale": "fine", "score": min(4, top)}
    return out
