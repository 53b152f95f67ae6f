"""Large decoding/parsing work queues per owner: one user's flood of large requests runs one at a time,
behind itself, while another user's work runs beside it."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest

from mikro.server._work_queues import WorkQueues, run_heavy

pytestmark = pytest.mark.anyio


async def test_an_owner_waits_behind_their_own_work_not_in_front_of_others() -> None:
    queues = WorkQueues()
    lock = threading.Lock()
    running = {"flooder": 0, "honest": 0}
    most = {"flooder": 0, "honest": 0}
    release, flooding, honest_ran = threading.Event(), threading.Event(), threading.Event()

    def work(owner: str) -> None:
        with lock:
            running[owner] += 1
            most[owner] = max(most[owner], running[owner])
        if owner == "honest":
            honest_ran.set()
        else:
            flooding.set()
            release.wait(30)
        with lock:
            running[owner] -= 1

    async def request(owner: str) -> None:
        with queues.owned_by(owner):
            await run_heavy(work, owner)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(request, "flooder")
        assert await anyio.to_thread.run_sync(flooding.wait, 30)
        tg.start_soon(request, "honest")
        # The honest request ran while the flooder's first one still held its queue ...
        assert await anyio.to_thread.run_sync(honest_ran.wait, 30)
        assert running["flooder"] == 1
        release.set()
    # ... and the flooder never had more than one at a time; nothing is left queued.
    assert most == {"flooder": 1, "honest": 1}
    assert len(queues) == 0
