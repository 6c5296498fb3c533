"""Spend caps: a job's estimated cost is reserved before it is submitted.

Invariant: ``spent + reserved <= cap`` at every moment, for dollars and credits alike.
A job whose reservation would break it is never submitted. When the provider reports the
real cost, the reservation is replaced by it (``settle``); a provider that charges more
than estimated can push ``spent`` past the estimate but the next reservation sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import BudgetExhausted
from pipeline.jobs import Budget
from pipeline.providers.specs import Cost


@dataclass(slots=True)
class Reservation:
    usd: float
    credits: float
    settled: bool = False


class BudgetGuard:
    """Tracks spend against a ``Budget``; not thread-safe (one event loop)."""

    __slots__ = ("budget", "reserved_credits", "reserved_usd", "spent_credits", "spent_usd")

    def __init__(self, budget: Budget, *, spent_usd: float = 0.0, spent_credits: float = 0.0):
        self.budget = budget
        self.spent_usd = spent_usd
        self.spent_credits = spent_credits
        self.reserved_usd = 0.0
        self.reserved_credits = 0.0

    def reserve(self, estimate: Cost) -> Reservation:
        """Reserve the estimated cost of one job or raise ``BudgetExhausted``."""
        usd = estimate.usd or 0.0
        credits = estimate.credits or 0.0
        b = self.budget
        if b.max_usd is not None and self.spent_usd + self.reserved_usd + usd > b.max_usd + 1e-9:
            raise BudgetExhausted(self._message("USD", self.spent_usd, b.max_usd))
        if (
            b.max_credits is not None
            and self.spent_credits + self.reserved_credits + credits > b.max_credits + 1e-9
        ):
            raise BudgetExhausted(self._message("credits", self.spent_credits, b.max_credits))
        self.reserved_usd += usd
        self.reserved_credits += credits
        return Reservation(usd, credits)

    def settle(self, reservation: Reservation, actual: Cost | None) -> None:
        """Replace a reservation by the actual cost (``None``: nothing was charged)."""
        if reservation.settled:
            return
        reservation.settled = True
        self.reserved_usd -= reservation.usd
        self.reserved_credits -= reservation.credits
        if actual is not None:
            self.spent_usd += actual.usd or 0.0
            self.spent_credits += actual.credits or 0.0

    def charge_unknown(self, estimate: Cost) -> None:
        """Count a submit that may have been charged (its reply was lost) as spent.

        Raises ``BudgetExhausted`` when spend and reservations now exceed a cap, so that
        the job is not sent again."""
        self.spent_usd += estimate.usd or 0.0
        self.spent_credits += estimate.credits or 0.0
        b = self.budget
        if b.max_usd is not None and self.spent_usd + self.reserved_usd > b.max_usd + 1e-9:
            raise BudgetExhausted(self._message("USD", self.spent_usd, b.max_usd))
        if (
            b.max_credits is not None
            and self.spent_credits + self.reserved_credits > b.max_credits + 1e-9
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
