"""Provider name -> adapter class, and one factory that builds an adapter by name."""

from __future__ import annotations

import aiohttp

from pipeline.errors import UsageError
from pipeline.providers._skills_video import SkillsVideoAdapter
from pipeline.providers._wavespeed import WaveSpeedAdapter
from pipeline.providers.base import ProviderAdapter
from pipeline.providers.specs import SPECS

ADAPTERS: dict[str, type[WaveSpeedAdapter] | type[SkillsVideoAdapter]] = {
    "wavespeed": WaveSpeedAdapter,
    "skills_video": SkillsVideoAdapter,
}


def create_adapter(
    name: str,
    *,
    api_key: str,
    base_url: str | None = None,
    session: aiohttp.ClientSession | None = None,
    usd_per_credit: float | None = None,
    request_timeout_s: float = 30.0,
) -> ProviderAdapter:
    """Build the adapter for provider ``name``; ``base_url`` defaults to the spec's.

    Raises ``UsageError`` for an unknown provider name.
    """
    try:
        cls = ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise UsageError(f"unknown provider {name!r} (known: {known})") from None
    return cls(
        base_url=base_url or SPECS[name].default_base_url,
        api_key=api_key,
        session=session,
        usd_per_credit=usd_per_credit,
        request_timeout_s=request_timeout_s,
    )
