"""One store suite, every backend: ``backend`` runs a test once on sqlite and once on a
real PostgreSQL (the session's ``pgserver``), as anyio runs its suite once per backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.store import RunStore, Snapshot, StateLocation, open_store, read_state

OUTPUT = "out/store-test"


@dataclass
class Backend:
    """How a test opens the store under test and reads it from "another process"."""

    kind: str
    location: StateLocation

    async def open(self, name: str = "store-test") -> RunStore:
        return await open_store(self.location, name=name, output=OUTPUT)

    def snapshot(self) -> Snapshot:
        return read_state(self.location, OUTPUT)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend in turn (the postgres one gets a fresh database)."""
    if request.param == "sqlite":
        return Backend("sqlite", StateLocation("sqlite", str(tmp_path / "state.db")))
    url: str = request.getfixturevalue("postgres_url")
    return Backend("postgres", StateLocation("postgres", url))
