"""Fixtures of the server tests: HTTP clients for fresh users of the session server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.server._helpers import Api


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
def new_api(mikro_server: Any, http: httpx.AsyncClient) -> Callable[..., Api]:
    """``new_api("alice")`` -> an Api for a fresh user of the session server."""

    def make(name: str = "user", admin: bool = False) -> Api:
        return Api(http, mikro_server.url, mikro_server.add_user(name, admin=admin))

    return make


@pytest.fixture
def api(new_api: Callable[..., Api]) -> Api:
    return new_api("alice")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings of a server of the test's own on SQLite, then on PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_database")}
