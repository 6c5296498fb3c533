"""A local emulator of both provider APIs (WaveSpeedAI v3 and skills.video v1).

One aiohttp application serves both APIs at their real paths, plus the generated images
and a few control endpoints (``/_emulator/...``). Used by ``pipeline run --emulate``,
``pipeline emulate``, the tests and the benchmarks. Faults and server-side limits are
configured with :class:`FaultProfile`.
"""

from __future__ import annotations

from pipeline.emulator._app import create_app
from pipeline.emulator._config import PROVIDERS, EmulatorConfig, FaultProfile
from pipeline.emulator._images import image_size
from pipeline.emulator._options import fault_profile, required_keys
from pipeline.emulator._server import EmulatorServer, serve, serve_forever
from pipeline.emulator._stats import EmulatorStats, ProviderStats

# Not a secret: the emulator accepts any non-empty bearer unless told otherwise.
EMULATOR_KEY = "emulator-key"

__all__ = [
    "EMULATOR_KEY",
    "PROVIDERS",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorStats",
    "FaultProfile",
    "ProviderStats",
    "create_app",
    "fault_profile",
    "image_size",
    "required_keys",
    "serve",
    "serve_forever",
]
