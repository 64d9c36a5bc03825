"""A USD cap that concurrent provider calls cannot pass: reserve, then settle.

Why reservations: with eight calls in flight, checking "spent so far + next call" lets all
eight start on the same small balance (a run at ``--concurrency 8`` stopped after $0.017 of
a $0.05 budget, reporting $0.0000). Here every call first reserves its worst case (prompt
tokens + ``max_tokens``, priced from litellm's map) and, once answered, settles at its real
cost, so spend + reservations never exceed the cap. When a call does not fit beside the
reservations in flight but would fit with none, it waits for them to settle: calls are
admitted one by one as the budget runs out, and the run stops (:class:`BudgetExhausted`)
only when the next call cannot fit even with nothing in flight. A run stopped this way has
spent at least ``cap - worst case of one call``.

No locks: asyncio runs one task at a time, and settling never awaits, so it is safe in the
``finally`` of a cancelled call. The :class:`~csc_harness.llm.Client` holds the budget, so
judging, rollouts and ablation cells through one client (or several clients given the same
budget, one after another, as ``csc-harness run`` does per step) share one cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import CSCError, UserError

__all__ = ["Budget", "BudgetExhausted", "Reservation", "UnpricedModel"]


class BudgetExhausted(CSCError):
    """The next call could cost more than what is left of the budget, even with no other
    call in flight. The run stops; re-running with a higher budget continues it."""

    def __init__(self, message: str, *, cap: float, spent: float, needed: float) -> None:
        super().__init__(message)
        self.cap, self.spent, self.needed = cap, spent, needed


class UnpricedModel(UserError):
    """A budget cannot meter a model that litellm's price map does not know."""


@dataclass
class Reservation:
    """The worst case set aside for one call until it settles or is released."""

    model: str
    amount: float
    open: bool = True


class Budget:
    """At most ``cap`` USD of provider spend, ``spent`` of it already used (e.g. recorded in
    an output folder by an earlier run). ``free`` names models known to cost nothing (a
    local demo server) so a budget can cover a run that mixes them with paid ones.
    """

    def __init__(self, cap: float, *, spent: float = 0.0, free: Iterable[str] = ()) -> None:
        if not cap >= 0 or not spent >= 0:
            raise UserError(f"a budget needs cap >= 0 and spent >= 0, got cap={cap!r}, "
                            f"spent={spent!r}")
        self.cap = float(cap)
        self.spent_before = float(spent)
        self.spent_now = 0.0
        """Real spend of the calls settled through this budget (USD)."""
        self.reserved = 0.0
        self.in_flight = 0
        self.settled = 0
        self.free = frozenset(free)
        self.stopped: BudgetExhausted | None = None
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def spent(self) -> float:
        """Spend counted against the cap: the earlier spend plus this session's."""
        return self.spent_before + self.spent_now

    @property
    def left(self) -> float:
        return max(0.0, self.cap - self.spent)

    def __repr__(self) -> str:
        return (f"Budget(cap={self.cap:g}, spent={self.spent:.6f}, reserved="
                f"{self.reserved:.6f}, in_flight={self.in_flight})")

    async def reserve(self, model: str, worst: float) -> Reservation:
        """Set ``worst`` USD aside for one call to ``model``, waiting while calls in flight
        hold what it needs; raises :class:`BudgetExhausted` when it cannot fit at all."""
        while True:
            if self.spent + worst > self.cap:
                raise self._exhausted(model, worst)
            if self.spent + self.reserved + worst <= self.cap:
                break
            loop = asyncio.get_running_loop()
            if self._changed is None or self._loop is not loop:  # events bind to one loop
                self._changed, self._loop = asyncio.Event(), loop
            await self._changed.wait()  # until a call in flight settles or is released
        self.reserved += worst
        self.in_flight += 1
        return Reservation(model, worst)

    def take(self, model: str, worst: float) -> Reservation:
        """:meth:`reserve` without waiting, for work metered from outside an event loop
        (lm-eval's step in ``csc-harness run``): raises when it does not fit now."""
        if self.spent + self.reserved + worst > self.cap:
            raise self._exhausted(model, worst)
        self.reserved += worst
        self.in_flight += 1
        return Reservation(model, worst)

    def _exhausted(self, model: str, worst: float) -> BudgetExhausted:
        stop = BudgetExhausted(
            f"stopped before exceeding the budget of ${self.cap:g}: ${self.spent:.4f} spent, "
            f"${self.left:.4f} left, and the next call to {model!r} could cost up to "
            f"${worst:.4f}", cap=self.cap, spent=self.spent, needed=worst)
        if self.stopped is None:
            self.stopped = stop
        return stop

    def settle(self, reservation: Reservation, cost: float | None) -> None:
        """Replace the reservation by the call's real cost (None: the worst case, which is
        all the budget knows) and let waiting calls re-check."""
        if not reservation.open:
            return
        reservation.open = False
        spend = reservation.amount if cost is None else max(0.0, float(cost))
        self.spent_now += spend
        self.settled += 1
        self._free(reservation)

    def release(self, reservation: Reservation) -> None:
        """Give the reservation back: the call failed or was cancelled before costing.
        Synchronous, so it is safe in a ``finally`` of a cancelled task."""
        if reservation.open:
            reservation.open = False
            self._free(reservation)

    def _free(self, reservation: Reservation) -> None:
        self.reserved = max(0.0, self.reserved - reservation.amount)
        self.in_flight -= 1
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()  # every waiter re-checks; later waiters get a fresh event

    def as_dict(self) -> dict[str, float | int | None]:
        """What ``run.json`` records about the budget."""
        return {"max_cost_usd": self.cap, "free_models": sorted(self.free), "spent_usd": round(self.spent, 10),
                "spent_before_usd": round(self.spent_before, 10),
                "spent_now_usd": round(self.spent_now, 10),
                "stopped": str(self.stopped) if self.stopped else None}
