"""The batch's shared budget for a fleet (``FleetBudget``, ``BudgetGuard``'s interface).

Reservations are taken under the shared budget's lock (``Fleet.reserve``); spend is what
the jobs' rows say they cost (the store keeps the sums), so settling a job is writing its
cost. A provider whose price is not learned yet gets one reservation at a time across the
fleet (the probe), and learned prices are shared.
"""

from __future__ import annotations

from pipeline.clock import Clock
from pipeline.engine._budget import Reservation
from pipeline.errors import BudgetExhausted
from pipeline.jobs import Budget
from pipeline.providers.specs import Cost
from pipeline.store import BudgetRow, Fleet

PROBE_POLL_S = 0.5  # waiting while another process probes a price


class FleetBudget:
    """The batch's shared budget (see the module note); ``BudgetGuard``'s interface."""

    def __init__(self, fleet: Fleet, budget: Budget, clock: Clock) -> None:
        self._fleet = fleet
        self.budget = budget
        self._clock = clock
        self._scales: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"FleetBudget({self.budget}, learned={self._scales})"

    @property
    def capped(self) -> bool:
        return self.budget.max_usd is not None or self.budget.max_credits is not None

    def knows(self, key: str) -> bool:
        return key in self._scales

    async def reserve(
        self, estimate: Cost, key: str, job_id: str = "", *, probe: bool = False
    ) -> Reservation:
        """Reserve ``job_id``'s estimate under the shared caps; raises ``BudgetExhausted``
        when a cap would be passed (waits while another job probes the price)."""
        base = (estimate.usd or 0.0, estimate.credits or 0.0)
        caps = (self.budget.max_usd, self.budget.max_credits)
        while True:
            answer = await self._fleet.reserve(job_id, key, base, caps, probe=probe)
            if answer != "wait":
                break
            await self._clock.sleep(PROBE_POLL_S)
        row = await self._fleet.budget()
        self._scales = row.scales
        if answer == "budget":
            raise BudgetExhausted(_reached(self.budget, row, base))
        scale = row.scales.get(key, 1.0) if answer == "ok" else 0.0
        return Reservation(base[0] * scale, base[1] * scale, key, base[0], base[1], job_id=job_id)

    async def adjust(self, reservation: Reservation, reported: Cost) -> None:
        """A reply reported the real charge: the job holds at least that; the price is
        learned for the fleet."""
        if reservation.settled:
            return
        usd = max(reservation.usd, reported.usd or 0.0)
        credits = max(reservation.credits, reported.credits or 0.0)
        reservation.usd, reservation.credits = usd, credits
        await self._fleet.raise_reservation(reservation.job_id, usd, credits)
        await self._learn(reservation, reported)

    async def settle(self, reservation: Reservation, actual: Cost | None) -> None:
        """The job's cost is written with its state (the shared sums follow it); nothing
        charged: its reservation is given back."""
        if reservation.settled:
            return
        reservation.settled = True
        if actual is None:
            await self._fleet.release_reservation(reservation.job_id)
        else:
            await self._learn(reservation, actual)

    async def charge(self, actual: Cost) -> None:
        """A task an earlier run paid for: its cost is written with its state."""

    async def charge_unknown(self, estimate: Cost, key: str = "") -> None:
        """A possible double charge (written with the job's state): raises
        ``BudgetExhausted`` when the spend now reaches a cap, so it is not sent again."""
        row = await self._fleet.budget()
        if _over(self.budget, row, (0.0, 0.0)):
            raise BudgetExhausted(_reached(self.budget, row, (0.0, 0.0)))

    async def _learn(self, reservation: Reservation, actual: Cost) -> None:
        ratios = [
            a / base
            for a, base in (
                (actual.usd, reservation.base_usd),
                (actual.credits, reservation.base_credits),
            )
            if a is not None and base > 0
        ]
        ratio = max([*ratios, 1.0])
        if ratio > self._scales.get(reservation.key, 0.0):
            self._scales[reservation.key] = ratio
            await self._fleet.learn_scale(reservation.key, ratio)


def _over(budget: Budget, row: BudgetRow, more: tuple[float, float]) -> str | None:
    """The unit of the cap that spend, reservations and ``more`` would pass, if any."""
    if budget.max_usd is not None and (
        row.spent_usd + row.reserved_usd + more[0] > budget.max_usd + 1e-9
    ):
        return "USD"
    if budget.max_credits is not None and (
        row.spent_credits + row.reserved_credits + more[1] > budget.max_credits + 1e-9
    ):
        return "credits"
    return None


def _reached(budget: Budget, row: BudgetRow, more: tuple[float, float]) -> str:
    if _over(budget, row, more) == "credits" and budget.max_credits is not None:
        spent, cap = row.spent_credits, budget.max_credits
        return f"budget reached: {spent:.4f} credits spent of {cap:g} credits"
    return f"budget reached: {row.spent_usd:.4f} USD spent of {budget.max_usd or 0:g} USD"
