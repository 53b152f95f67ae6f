"""Fixtures for the async client's tests: users on the real reference server, sessions, a scripted proxy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import mikro
from tests.client._scripted import ScriptedServer


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A developer's own MIKRO_* variables or a mikro.yaml in the checkout must not leak into tests.
    for name in ("MIKRO_URL", "MIKRO_TOKEN", "MIKRO_TIMEOUT", "MIKRO_RETRIES", "MIKRO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def alice_token(mikro_server: Any) -> str:
    return str(mikro_server.add_user(f"alice-{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="session")
def bob_token(mikro_server: Any) -> str:
    return str(mikro_server.add_user(f"bob-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
async def m(mikro_server: Any, alice_token: str) -> AsyncIterator[mikro.Mikro]:
    async with mikro.connect(mikro_server.url, token=alice_token, timeout=20) as session:
        yield session


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def proxy(mikro_server: Any) -> Iterator[ScriptedServer]:
    """A scripted server forwarding to the real reference server unless told otherwise."""
    server = ScriptedServer(upstream=mikro_server.url)
    try:
        yield server
    finally:
        server.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
