"""Fixtures of the subscription tests: a scripted graphql-transport-ws peer (protocol edge cases)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures_servers import free_port
from tests.subscriptions._scripted_server import ScriptedApp, ScriptedServer, ServerThread


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    app = ScriptedApp()
    port = free_port()
    thread = ServerThread(app, port)
    thread.start()
    try:
        yield ScriptedServer(base_url=f"http://127.0.0.1:{port}", app=app)
    finally:
        thread.stop()
