"""A client that disconnects stops its request: a mutation still waiting for the database is not run
later for nobody. Over a real socket, against the server's app under uvicorn in this test's loop (the
test holds the server's write transaction open, which only code in its process can)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import func, select

from mikro.server._models import Sample
from mikro.server._services import Services
from tests.server._helpers import serving_in_process

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.anyio,
    pytest.mark.single_backend(reason="the server runs on asyncio (uvicorn, SQLAlchemy's asyncio extension)"),
]

TOKEN = "disconnect-test-admin-token-0123456789"


class _Served:
    def __init__(self, services: Services, port: int) -> None:
        self.services = services
        self.port = port


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[_Served]:
    async with serving_in_process(tmp_path / "data", TOKEN) as (app, port):
        yield _Served(app.state.services, port)


def _request(document: str) -> bytes:
    body = json.dumps({"query": document}).encode()
    head = (
        "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _samples(services: Services, name: str) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).where(Sample.name == name)) or 0)


async def _waiting_writers(services: Services) -> int:
    lock = services.db._write_lock
    assert lock is not None
    return lock.statistics().tasks_waiting


async def test_a_disconnect_stops_a_mutation_waiting_to_write(served: _Served) -> None:
    services = served.services
    async with services.db.write():
        # The database is busy with another write: the request queues behind it.
        stream = await anyio.connect_tcp("127.0.0.1", served.port)
        await stream.send(_request('mutation { createSample(input: {name: "left"}) { id } }'))
        with anyio.fail_after(30):
            while await _waiting_writers(services) == 0:
                await anyio.sleep(0.01)
        await stream.aclose()
        # The server notices the socket closing and stops the request where it waits.
        with anyio.fail_after(30):
            while await _waiting_writers(services) > 0:
                await anyio.sleep(0.01)
    assert await _samples(services, "left") == 0

    # A client that stays gets its answer, on the same server.
    async with await anyio.connect_tcp("127.0.0.1", served.port) as stream:
        await stream.send(_request('mutation { createSample(input: {name: "stayed"}) { id } }'))
        answer = b""
        with anyio.fail_after(30):
            while b'"createSample"' not in answer:
                answer += await stream.receive()
    assert await _samples(services, "stayed") == 1
