"""Publish/subscribe of change events between mutations and subscriptions.

``PubSub`` is the interface; ``InMemoryPubSub`` fans out inside one process. The server uses
``EventFeed`` (``_event_feed.py``), which feeds an ``InMemoryPubSub`` from the event table, so that
every process on one database sees every event. Subscriptions lose nothing when a subscriber falls
behind, because they re-read the event table.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["EventMessage", "InMemoryPubSub", "LiveEvents", "PubSub"]


@dataclass(frozen=True)
class EventMessage:
    cursor: int  # the event's id: its place among every user's events (an admin's cursor)
    stream: str  # "representation" or "roi"
    kind: str  # CREATE, UPDATE, DELETE
    object_id: int
    scope_id: int | None
    owner_id: int
    owner_seq: int  # its place among its owner's events (the owner's cursor)

    @classmethod
    def from_row(cls, row: Any) -> EventMessage:
        """The message of a row of the event table (``_models.Event``)."""
        return cls(row.id, row.stream, row.kind, row.object_id, row.scope_id, row.owner_id, row.owner_seq)

    def cursor_for(self, sees_everyone: bool) -> int:
        """The cursor a subscriber is shown: a user's own sequence number says nothing about how many
        events other users caused; an admin, who sees every event, gets the global order."""
        return self.cursor if sees_everyone else self.owner_seq


class LiveEvents:
    """What ``subscribe`` yields: iterate for messages; ``lagged`` tells if some were dropped."""

    def __init__(self, receive: MemoryObjectReceiveStream[EventMessage]) -> None:
        self._receive = receive
        self.lagged = False

    def __aiter__(self) -> AsyncIterator[EventMessage]:
        return self._receive.__aiter__()


class PubSub(abc.ABC):
    @abc.abstractmethod
    async def publish(self, channel: str, message: EventMessage) -> None:
        """Deliver ``message`` to every current subscriber of ``channel`` without waiting for them."""

    @abc.abstractmethod
    def subscribe(self, channel: str) -> AbstractAsyncContextManager[LiveEvents]:
        """Receive the messages published on ``channel`` from now until the block ends."""


class InMemoryPubSub(PubSub):
    """Fan-out inside one process. A subscriber whose buffer is full is cut off (``lagged``)."""

    def __init__(self, buffer: int = 1024) -> None:
        self._buffer = buffer
        self._subscribers: dict[str, dict[int, tuple[MemoryObjectSendStream[EventMessage], LiveEvents]]] = {}

    async def publish(self, channel: str, message: EventMessage) -> None:
        for key, (send, sub) in list(self._subscribers.get(channel, {}).items()):
            try:
                send.send_nowait(message)
            except anyio.WouldBlock:
                # Never let a slow client stall a mutation: it catches up from the event table.
                sub.lagged = True
                send.close()
                self._subscribers[channel].pop(key, None)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers[channel].pop(key, None)

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[LiveEvents]:
        send, receive = anyio.create_memory_object_stream[EventMessage](self._buffer)
        sub = LiveEvents(receive)
        key = id(sub)
        self._subscribers.setdefault(channel, {})[key] = (send, sub)
        try:
            yield sub
        finally:
            channel_subs = self._subscribers.get(channel, {})
            channel_subs.pop(key, None)
            if not channel_subs:
                self._subscribers.pop(channel, None)
            send.close()
            receive.close()

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[LiveEvents]:
        return self._subscribe(channel)
