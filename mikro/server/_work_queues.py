"""Fair queues for the CPU work a request may bring that is too large for the event loop (decoding a
large body, parsing and validating a large document): it runs in a worker thread, one at a time per
owner (a user; a websocket's client address), so that someone who floods the server with large requests
waits behind their own, not in front of everyone else. Small requests never queue: they are decoded and
parsed on the loop, and repeated documents come from the query cache."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import anyio
import anyio.to_thread

__all__ = ["WorkQueues", "run_heavy"]

T = TypeVar("T")

# The queue of the request being served (None outside a request: anyio's shared thread limiter).
_CURRENT: ContextVar[anyio.CapacityLimiter | None] = ContextVar("mikro_work_queue", default=None)


class WorkQueues:
    """One queue (a one-thread ``CapacityLimiter``) per owner with a request in flight."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, tuple[anyio.CapacityLimiter, int]] = {}

    @contextmanager
    def owned_by(self, owner: Hashable) -> Iterator[None]:
        """Inside this block, ``run_heavy`` queues behind ``owner``'s other heavy work."""
        limiter, requests = self._queues.get(owner) or (anyio.CapacityLimiter(1), 0)
        self._queues[owner] = (limiter, requests + 1)
        token = _CURRENT.set(limiter)
        try:
            yield
        finally:
            _CURRENT.reset(token)
            limiter, requests = self._queues[owner]
            if requests == 1:
                del self._queues[owner]
            else:
                self._queues[owner] = (limiter, requests - 1)

    def __len__(self) -> int:
        return len(self._queues)


async def run_heavy(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread, after the current owner's earlier heavy work."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=_CURRENT.get())
