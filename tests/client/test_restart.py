"""A session rides out a server restart: its requests are retried for longer than a restart takes."""

from __future__ import annotations

import threading

import anyio
import pytest

import mikro
from tests.fixtures_servers import ServerFactory

pytestmark = pytest.mark.anyio


@pytest.mark.slow
async def test_requests_ride_out_a_server_restart(server_factory: ServerFactory) -> None:
    server = await anyio.to_thread.run_sync(server_factory.start)
    token = await anyio.to_thread.run_sync(server.add_user, "restarted")
    down = threading.Event()

    def restart() -> None:
        server.stop()
        down.set()
        server.start()

    # Default retries; only the per-request timeout is raised, for a loaded test machine's slow start.
    async with mikro.connect(server.url, token=token, timeout=90) as m:
        await m.create_sample("before")
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, restart)
            while not down.is_set():
                await anyio.sleep(0.01)
            # Sent while the server is down: a query, then a mutation (retried under its Idempotency-Key).
            assert (await m.me()).username == "restarted"
            sample = await m.create_sample("across the restart")
        assert [s.name for s in await m.list_samples(name_contains="across")] == [sample.name]
