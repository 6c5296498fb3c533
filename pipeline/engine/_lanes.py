"""A run's lanes: one per provider, with its adapter and the limits it works within.

Alone, a lane's limits are its own (a ``RateLimiter`` for requests, another for the
account's images per minute); in a fleet they are the fleet's (``FleetRun.lane_parts``).
An account whose images per minute the manifest does not state is assumed to be of the
provider's lowest tier, unless ``RunOptions.tier_defaults`` is off (the emulator).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from pipeline._logs import get_logger
from pipeline.engine._lane import Lane, Limiter, SharedSlots
from pipeline.engine._limits import RateLimiter
from pipeline.jobs import Batch, ProviderSettings
from pipeline.providers import create_adapter
from pipeline.providers.specs import SPECS

if TYPE_CHECKING:
    from pipeline.engine._fleet import FleetRun
    from pipeline.engine._runner import RunOptions


def images_per_minute(name: str, settings: ProviderSettings, tier_defaults: bool) -> float | None:
    """The account's images per minute: the manifest's, else its provider's lowest tier
    (with ``tier_defaults``; said in the run's log), else none."""
    if settings.images_per_minute is not None or not tier_defaults:
        return settings.images_per_minute
    spec = SPECS[name]
    if spec.tiers and spec.default_tier:
        ipm, _ = spec.tiers[spec.default_tier]
        get_logger().warning(
            "%s: the manifest states no tier nor images_per_minute: assuming the %s tier "
            "(%g images per minute); set providers.%s.tier to your account's",
            name,
            spec.default_tier,
            ipm,
            name,
        )
        return ipm
    return None


async def build_lanes(
    batch: Batch,
    endpoints: dict[str, tuple[str, str]],
    options: RunOptions,
    stack: AsyncExitStack,
    shared: FleetRun | None,
) -> dict[str, Lane]:
    """The lanes of the providers in ``endpoints`` (base URL, key); their adapters close
    with ``stack``."""
    lanes: dict[str, Lane] = {}
    for name, (base, key) in endpoints.items():
        settings = batch.providers[name]
        adapter = create_adapter(
            name, api_key=key, base_url=base, usd_per_credit=settings.usd_per_credit
        )
        stack.push_async_callback(adapter.aclose)
        ipm = images_per_minute(name, settings, options.tier_defaults)
        limiter: Limiter | None = None
        images: Limiter | None = None
        slots: SharedSlots | None = None
        if shared is not None:
            limiter, images, slots = await shared.lane_parts(name, key, settings, ipm)
        elif ipm:
            images = RateLimiter(ipm / 60, clock=options.clock)
        lanes[name] = Lane(
            adapter, settings, clock=options.clock, limiter=limiter, images=images, shared=slots
        )
    return lanes
