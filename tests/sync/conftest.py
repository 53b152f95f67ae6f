"""Fixtures of the sync facade's tests: a user on the reference server, sessions on both portal backends."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import mikro
import mikro.sync


@pytest.fixture(params=["asyncio", "trio"])
def portal_backend(request: pytest.FixtureRequest) -> str:
    """The event loop library the sync session's own thread runs (the caller never sees it)."""
    return str(request.param)


@pytest.fixture(scope="module")
def sync_token(mikro_server: Any) -> str:
    return str(mikro_server.add_user(f"sync-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def session(mikro_server: Any, sync_token: str, portal_backend: str) -> Iterator[mikro.sync.SyncMikro]:
    with mikro.sync.connect(mikro_server.url, token=sync_token, backend=portal_backend) as m:
        yield m


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mikro-sync-")]
