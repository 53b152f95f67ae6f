from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import mikro
from tests.fixtures_servers import MikroServer


@pytest.fixture
async def m(mikro_server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    """A fresh user's session on the folder-store server (each test sees only its own images)."""
    token = mikro_server.add_user("ingest")
    async with mikro.connect(mikro_server.url, token=token, timeout=30) as session:
        yield session
