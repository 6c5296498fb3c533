"""The emulator in its own process: ``python -m benchmarks.emulator_proc SETUP_JSON``.

The child serves both APIs on 127.0.0.1 (a free port) and prints its base URL on one
line once listening. :class:`EmulatorProcess` starts it, reads the URL, fetches
``/_emulator/stats`` and stops it.

``real_size_images`` asks the emulator for images of a real generator's weight
(``EmulatorConfig.real_size_images``: mostly incompressible noise, about 2 MiB for a 1K
PNG, each image its own bytes over a noise template shared by its size); the default
pictures are flat colours of a few kilobytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from types import TracebackType

import anyio
from pydantic import BaseModel, ConfigDict

from benchmarks.procs import REPO, python_module
from pipeline.emulator import EmulatorConfig, EmulatorStats, FaultProfile, serve_forever


class EmulatorSetup(BaseModel):
    """What the benchmark asks of its emulator (JSON on the child's command line)."""

    model_config = ConfigDict(frozen=True)

    latency_s: float = 0.0
    image_scale: float = 0.125
    max_rps: float | None = None
    real_size_images: bool = False
    seed: int = 7

    def config(self) -> EmulatorConfig:
        faults = FaultProfile(max_rps=self.max_rps)
        return EmulatorConfig(
            latency_s=self.latency_s,
            image_scale=self.image_scale,
            real_size_images=self.real_size_images,
            seed=self.seed,
            faults=faults,
        )


def _child_main(raw: str) -> None:
    setup = EmulatorSetup.model_validate_json(raw)

    def ready(base_url: str) -> None:
        print(base_url, flush=True)

    anyio.run(serve_forever, setup.config(), "127.0.0.1", 0, ready, backend="asyncio")


class EmulatorProcess:
    """A running emulator child; use as a context manager.

    Raises ``RuntimeError`` if the child exits before announcing its URL.
    """

    def __init__(self, setup: EmulatorSetup) -> None:
        self.setup = setup
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __repr__(self) -> str:
        return f"EmulatorProcess({self.base_url!r})"

    def __enter__(self) -> EmulatorProcess:
        argv = python_module("benchmarks.emulator_proc", self.setup.model_dump_json())
        self._proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self._stop()
            raise RuntimeError(f"emulator did not start (said {line!r})")
        self.base_url = line
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def stats(self) -> EmulatorStats:
        """The emulator's live counters (``GET /_emulator/stats``)."""
        with urllib.request.urlopen(self.base_url + "/_emulator/stats", timeout=10) as resp:
            return EmulatorStats.from_dict(json.load(resp))


if __name__ == "__main__":
    _child_main(sys.argv[1])
