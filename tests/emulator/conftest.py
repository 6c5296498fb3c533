"""Fixtures for the emulator's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that sends a bearer key with every request."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer test-key"}) as s:
        yield s
