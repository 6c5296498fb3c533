"""Provider adapters behind one Protocol, and the specs they share with the manifest."""

from __future__ import annotations

from pipeline.providers.base import ImageRef, ProviderAdapter, TaskState, TaskStatus
from pipeline.providers.specs import PROVIDER_NAMES, SPECS, Cost, ProviderSpec

__all__ = [
    "PROVIDER_NAMES",
    "SPECS",
    "Cost",
    "ImageRef",
    "ProviderAdapter",
    "ProviderSpec",
    "TaskState",
    "TaskStatus",
]
