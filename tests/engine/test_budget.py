"""Budget reservations: spend plus reservations never pass the cap."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.engine._budget import BudgetGuard
from pipeline.errors import BudgetExhausted
from pipeline.jobs import Budget
from pipeline.providers.specs import Cost


@pytest.mark.anyio
async def test_reservation_past_the_cap_is_refused() -> None:
    """Three $0.028 jobs fit under $0.09; the fourth is refused."""
    guard = BudgetGuard(Budget(max_usd=0.09))
    for _ in range(3):
        await guard.reserve(Cost(0.028, None, "estimate"))
    with pytest.raises(BudgetExhausted, match="budget reached"):
        await guard.reserve(Cost(0.028, None, "estimate"))


@pytest.mark.anyio
async def test_settle_replaces_the_reservation_with_the_actual_cost() -> None:
    """A settled reservation frees its estimate and counts the real cost once."""
    guard = BudgetGuard(Budget(max_credits=100))
    r = await guard.reserve(Cost(None, 40, "estimate"))
    await guard.settle(r, Cost(None, 20, "reported"))
    await guard.settle(r, Cost(None, 20, "reported"))
    assert (guard.spent_credits, guard.reserved_credits) == (20, 0)


@pytest.mark.anyio
async def test_earlier_spend_counts() -> None:
    """Money spent by an earlier run of the batch counts against the cap."""
    guard = BudgetGuard(Budget(max_usd=1.0), spent_usd=0.99)
    with pytest.raises(BudgetExhausted):
        await guard.reserve(Cost(0.028, None, "estimate"))


@given(
    cap=st.floats(min_value=0.01, max_value=10),
    prices=st.lists(st.floats(min_value=0.001, max_value=2), max_size=200),
)
def test_spend_never_exceeds_the_cap(cap: float, prices: list[float]) -> None:
    """Whatever the prices, settled spend never passes the cap when actual == estimate."""

    async def run() -> None:
        guard = BudgetGuard(Budget(max_usd=cap))
        for price in prices:
            try:
                r = await guard.reserve(Cost(price, None, "estimate"))
            except BudgetExhausted:
                continue
            assert guard.spent_usd + guard.reserved_usd <= cap + 1e-9
            await guard.settle(r, Cost(price, None, "price_table"))
        assert guard.spent_usd <= cap + 1e-9

    anyio.run(run, backend="asyncio")
