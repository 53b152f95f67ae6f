"""Shared fixtures. Every async test runs on both anyio backends (asyncio and trio)."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures_servers"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
