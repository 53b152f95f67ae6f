"""Shared fixtures. Every async test runs on both anyio backends (asyncio and trio)."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures_servers", "tests.fixtures_cluster"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
