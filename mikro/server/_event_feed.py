"""Change events shared by every server process on one database: the event table is the truth.

Each process runs one tailer that reads new rows of the event table in cursor order and fans them out
to its own subscribers (``InMemoryPubSub``). What wakes the tailer: a commit in this process at once;
a commit in another process through PostgreSQL ``LISTEN/NOTIFY`` (the writer's ``NOTIFY`` is sent by
PostgreSQL when its transaction commits), or on SQLite by polling the table every
``event_poll_interval`` seconds (that is the latency across processes there; within a process it is
immediate). PostgreSQL is also polled, slowly, as a safety net for a dropped LISTEN connection.

Why a tailer never skips an event: cursors are handed out in commit order. SQLite has one writer at a
time; on PostgreSQL a transaction takes a transaction-scoped advisory lock before it inserts events
(``lock_event_order``), so the next one cannot take a cursor until it has committed or rolled back.
When the tailer sees cursor 11, cursor 10 has committed (it is in the same read) or was rolled back
and never will be. Each event's owner sequence number (the cursor its owner is shown, so that cursors
say nothing about other users' events) is taken under the same lock, so it follows the same order.
A subscriber that falls behind is cut off and catches up from the table (``_subscription.event_stream``),
with ``GAP`` only for events pruned from it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mikro.server._database import Database
from mikro.server._models import Event
from mikro.server._pubsub import EventMessage, InMemoryPubSub, LiveEvents, PubSub

__all__ = ["NOTIFY_CHANNEL", "EventFeed", "lock_event_order"]

logger = logging.getLogger("mikro.server")

NOTIFY_CHANNEL = "mikro_events"
# "mikro-ev" as a 64-bit integer: the advisory lock that orders event cursors on PostgreSQL.
_EVENT_ORDER_LOCK = 0x6D696B726F2D6576
_BATCH = 1000
_POSTGRES_SAFETY_POLL = 5.0
_RECONNECT_DELAY = 1.0


def lock_event_order(session: Session) -> None:
    """Before a transaction inserts events on PostgreSQL: cursors in commit order (see the module doc),
    and a NOTIFY to the other processes when it commits. Synchronous: a write transaction's job (see
    `Database.run_write`)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _EVENT_ORDER_LOCK})
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


class EventFeed(PubSub):
    """``PubSub`` for one server process: ``publish`` wakes the tailer, which reads the event table."""

    def __init__(self, db: Database, *, buffer: int, poll_interval: float) -> None:
        self._db = db
        self._local = InMemoryPubSub(buffer)
        self._poll_interval = poll_interval
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        self._subscribers = 0
        self._last: int | None = None  # the newest cursor fanned out (None: not following the table)

    async def publish(self, channel: str, message: EventMessage) -> None:
        self._wake.set()

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[LiveEvents]:
        async with self._local.subscribe(channel) as live:
            async with self._lock:
                self._subscribers += 1
                if self._last is None:
                    # Following starts here: the subscriber reads the table (its replay, or the head
                    # it joins at) after this, so nothing after this cursor is missed.
                    self._last = await self._head()
                    self._wake.set()  # and the tailer starts polling
            try:
                yield live
            finally:
                self._subscribers -= 1

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[LiveEvents]:
        return self._subscribe(channel)

    async def run(self) -> None:
        """The tailer (and on PostgreSQL its LISTEN connection); runs until cancelled."""
        async with anyio.create_task_group() as tg:
            interval = self._poll_interval
            if not self._db.is_sqlite:
                tg.start_soon(self._listen)
                interval = _POSTGRES_SAFETY_POLL
            while True:
                with anyio.move_on_after(interval if self._subscribers else None):
                    await self._wake.wait()
                self._wake = anyio.Event()
                try:
                    await self._fan_out()
                except Exception:
                    logger.exception("reading new events failed; retrying")
                    await anyio.sleep(_RECONNECT_DELAY)

    async def _fan_out(self) -> None:
        async with self._lock:
            if self._subscribers == 0:
                # Nobody listens: stop following; the next subscriber starts from the head then.
                self._last = None
                return
            assert self._last is not None
            while True:
                query = select(Event).where(Event.id > self._last).order_by(Event.id).limit(_BATCH)
                async with self._db.read() as session:
                    rows = (await session.scalars(query)).all()
                for row in rows:
                    message = EventMessage.from_row(row)
                    await self._local.publish(row.stream, message)
                    self._last = row.id
                if len(rows) < _BATCH:
                    return

    async def _head(self) -> int:
        async with self._db.read() as session:
            return int(await session.scalar(select(func.max(Event.id))) or 0)

    async def _listen(self) -> None:
        import asyncpg

        url = self._db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

        def notified(*_: Any) -> None:
            self._wake.set()

        while True:
            try:
                connection = await asyncpg.connect(url)
            except (OSError, asyncpg.PostgresError):
                logger.warning("could not open the LISTEN connection; retrying", exc_info=True)
                await anyio.sleep(_RECONNECT_DELAY)
                continue
            try:
                lost = anyio.Event()
                connection.add_termination_listener(lambda *_, lost=lost: lost.set())
                await connection.add_listener(NOTIFY_CHANNEL, notified)
                # Anything committed while we were not listening is in the table: read it now.
                self._wake.set()
                await lost.wait()
                logger.warning("the LISTEN connection was lost; reconnecting")
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.close(timeout=5)
