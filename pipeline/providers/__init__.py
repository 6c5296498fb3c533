"""Provider adapters behind one Protocol, and the specs they share with the manifest.

The adapters (and so aiohttp) load on first use of their names, so code that needs only the
specs or the Protocol (the manifest loader, ``pipeline plan``) does not import aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.providers.base import (
    ImageRef,
    ListedTask,
    ProviderAdapter,
    StreamDropped,
    TaskState,
    TaskStatus,
)
from pipeline.providers.specs import PROVIDER_NAMES, SPECS, Cost, ProviderSpec

if TYPE_CHECKING:
    from pipeline.providers._registry import ADAPTERS, create_adapter
    from pipeline.providers._skills_video import SkillsVideoAdapter
    from pipeline.providers._wavespeed import WaveSpeedAdapter

_LAZY = {
    "ADAPTERS": "pipeline.providers._registry",
    "create_adapter": "pipeline.providers._registry",
    "SkillsVideoAdapter": "pipeline.providers._skills_video",
    "WaveSpeedAdapter": "pipeline.providers._wavespeed",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ADAPTERS",
    "PROVIDER_NAMES",
    "SPECS",
    "Cost",
    "ImageRef",
    "ListedTask",
    "ProviderAdapter",
    "ProviderSpec",
    "SkillsVideoAdapter",
    "StreamDropped",
    "TaskState",
    "TaskStatus",
    "WaveSpeedAdapter",
    "create_adapter",
]
