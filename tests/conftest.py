"""Shared fixtures: anyio on asyncio, settings under tmp_path, a fixed clock, the in-memory server."""

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mcp import Client

from omnipost.app import OmnipostServer, build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", _env_file=None)  # type: ignore[call-arg]  # pydantic-settings kwarg


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def server(settings: Settings, clock: FixedClock) -> OmnipostServer:
    return build_server(settings, clock=clock)


@pytest.fixture
async def client(server: OmnipostServer) -> AsyncIterator[Client]:
    async with Client(server) as c:
        yield c
