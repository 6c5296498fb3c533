"""Spend caps: a job's estimated cost is reserved before it is submitted.

Invariant: ``spent + reserved <= cap`` at every moment, for dollars and credits alike.
A job whose reservation would break it is never submitted.

Estimates come from the provider's published prices, which may be wrong (skills.video
reports its charge only in the submit reply). So the guard learns, per provider, the
largest ratio of actual to estimated cost seen so far and scales later reservations by
it; and as soon as a reply reports the real charge, the reservation is raised to it
(``adjust``), before any further job is admitted. When the task ends the reservation is
replaced by the final cost (``settle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.errors import BudgetExhausted
from pipeline.jobs import Budget
from pipeline.providers.specs import Cost


@dataclass(slots=True)
class Reservation:
    """One job's reserved cost: ``usd``/``credits`` as reserved (the estimate times the
    provider's learned scale), ``base_*`` the estimate itself."""

    usd: float
    credits: float
    key: str = ""
    base_usd: float = 0.0
    base_credits: float = 0.0
    settled: bool = False
    job_id: str = ""


class Spending(Protocol):
    """Spend caps as the scheduler and the download stage use them: ``BudgetGuard`` for a
    process alone, ``engine._fleet_budget.FleetBudget`` for a fleet."""

    @property
    def capped(self) -> bool: ...

    def knows(self, key: str) -> bool:
        """Whether a real charge of provider ``key`` has been seen."""
        ...

    async def reserve(
        self, estimate: Cost, key: str, job_id: str = "", *, probe: bool = False
    ) -> Reservation:
        """Reserve one job's estimate or raise ``BudgetExhausted``."""
        ...

    async def adjust(self, reservation: Reservation, reported: Cost) -> None: ...

    async def settle(self, reservation: Reservation, actual: Cost | None) -> None: ...

    async def charge(self, actual: Cost) -> None: ...

    async def charge_unknown(self, estimate: Cost, key: str = "") -> None: ...


class BudgetGuard:
    """Tracks spend against a ``Budget``; not thread-safe (one event loop)."""

    __slots__ = (
        "_scale",
        "budget",
        "reserved_credits",
        "reserved_usd",
        "spent_credits",
        "spent_usd",
    )

    def __init__(self, budget: Budget, *, spent_usd: float = 0.0, spent_credits: float = 0.0):
        self.budget = budget
        self.spent_usd = spent_usd
        self.spent_credits = spent_credits
        self.reserved_usd = 0.0
        self.reserved_credits = 0.0
        self._scale: dict[str, float] = {}

    @property
    def capped(self) -> bool:
        return self.budget.max_usd is not None or self.budget.max_credits is not None

    def knows(self, key: str) -> bool:
        """Whether a real charge of provider ``key`` has been seen."""
        return key in self._scale

    async def reserve(
        self, estimate: Cost, key: str = "", job_id: str = "", *, probe: bool = False
    ) -> Reservation:
        """Reserve the estimated cost of one job (of provider ``key``) or raise
        ``BudgetExhausted``. (``probe``: one at a time is the scheduler's, alone.)"""
        scale = self._scale.get(key, 1.0)
        base_usd = estimate.usd or 0.0
        base_credits = estimate.credits or 0.0
        usd, credits = base_usd * scale, base_credits * scale
        self._check(usd, credits)
        self.reserved_usd += usd
        self.reserved_credits += credits
        return Reservation(usd, credits, key, base_usd, base_credits, job_id=job_id)

    async def adjust(self, reservation: Reservation, reported: Cost) -> None:
        """A reply reported the real charge: raise the reservation to it, and learn."""
        if reservation.settled:
            return
        self._learn(reservation, reported)
        usd = max(reservation.usd, reported.usd or 0.0)
        credits = max(reservation.credits, reported.credits or 0.0)
        self.reserved_usd += usd - reservation.usd
        self.reserved_credits += credits - reservation.credits
        reservation.usd, reservation.credits = usd, credits

    async def settle(self, reservation: Reservation, actual: Cost | None) -> None:
        """Replace a reservation by the actual cost (``None``: nothing was charged)."""
        if reservation.settled:
            return
        reservation.settled = True
        self.reserved_usd -= reservation.usd
        self.reserved_credits -= reservation.credits
        if actual is not None:
            self._learn(reservation, actual)
            self.spent_usd += actual.usd or 0.0
            self.spent_credits += actual.credits or 0.0

    async def charge(self, actual: Cost) -> None:
        """Count a cost that had no reservation (a task an earlier run paid for)."""
        self.spent_usd += actual.usd or 0.0
        self.spent_credits += actual.credits or 0.0

    async def charge_unknown(self, estimate: Cost, key: str = "") -> None:
        """Count a submit that may have been charged (its reply was lost) as spent.

        Raises ``BudgetExhausted`` when spend and reservations now exceed a cap, so that
        the job is not sent again."""
        scale = self._scale.get(key, 1.0)
        self.spent_usd += (estimate.usd or 0.0) * scale
        self.spent_credits += (estimate.credits or 0.0) * scale
        self._check(0.0, 0.0)

    def _learn(self, reservation: Reservation, actual: Cost) -> None:
        ratios = [
            a / b
            for a, b in (
                (actual.usd, reservation.base_usd),
                (actual.credits, reservation.base_credits),
            )
            if a is not None and b > 0
        ]
        self._scale[reservation.key] = max(self._scale.get(reservation.key, 1.0), *ratios, 1.0)

    def _check(self, usd: float, credits: float) -> None:
        b = self.budget
        if b.max_usd is not None and self.spent_usd + self.reserved_usd + usd > b.max_usd + 1e-9:
            raise BudgetExhausted(self._message("USD", self.spent_usd, b.max_usd))
        if (
            b.max_credits is not None
            and self.spent_credits + self.reserved_credits + credits > b.max_credits + 1e-9
        ):
            raise BudgetExhausted(self._message("credits", self.spent_credits, b.max_credits))

    @staticmethod
    def _message(unit: str, spent: float, cap: float) -> str:
        return f"budget reached: {spent:.4f} {unit} spent of {cap:g} {unit}"

    def __repr__(self) -> str:
        return (
            f"BudgetGuard(spent_usd={self.spent_usd:.4f}, reserved_usd={self.reserved_usd:.4f}, "
            f"spent_credits={self.spent_credits:g}, budget={self.budget})"
        )
