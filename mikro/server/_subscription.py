"""The ``Subscription`` root: replay from the event table, then live events from pub/sub."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

import strawberry
from sqlalchemy import func, select
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._context import Context, context_of
from mikro.server._crud import get_owned
from mikro.server._errors import BadUserInput
from mikro.server._loaders import Loaders
from mikro.server._pubsub import EventMessage
from mikro.server._services import PRUNED_THROUGH, Services

__all__ = ["Subscription", "event_stream"]

logger = logging.getLogger("mikro.server")

_REPLAY_BATCH = 500
T = TypeVar("T")


def _matches(message: EventMessage, user: AuthUser, scope_id: int | None) -> bool:
    if not user.can_see(message.owner_id):
        return False
    return scope_id is None or message.scope_id == scope_id


async def _log_bounds(services: Services, user: AuthUser) -> tuple[int, int]:
    """How far the event log was pruned, and its newest cursor, in the cursors ``user`` is shown."""
    async with services.db.read() as session:
        if user.is_admin:
            meta = await session.get(m.Meta, PRUNED_THROUGH)
            pruned = int(meta.value) if meta is not None else 0
            return pruned, max(pruned, int(await session.scalar(select(func.max(m.Event.id))) or 0))
        query = select(m.User.events_pruned_through, m.User.event_seq).where(m.User.id == user.id)
        row = (await session.execute(query)).one_or_none()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def _gap(stream: str, cursor: int, scope_id: int | None, user: AuthUser) -> EventMessage:
    return EventMessage(cursor, stream, "GAP", 0, scope_id, user.id, cursor)


async def _replay(
    services: Services, stream: str, user: AuthUser, scope_id: int | None, after: int
) -> AsyncIterator[EventMessage]:
    """Stored events after ``after``; first a GAP if the log was pruned past it, or if ``after`` is
    no cursor this user was given (one from before per-user cursors, say)."""
    pruned_through, newest = await _log_bounds(services, user)
    if after < pruned_through or after > newest:
        after = pruned_through if after < pruned_through else newest
        yield _gap(stream, after, scope_id, user)
    seq = m.Event.id if user.is_admin else m.Event.owner_seq
    while True:
        query = select(m.Event).where(m.Event.stream == stream, seq > after)
        if not user.is_admin:
            query = query.where(m.Event.owner_id == user.id)
        if scope_id is not None:
            query = query.where(m.Event.scope_id == scope_id)
        async with services.db.read() as session:
            rows = (await session.scalars(query.order_by(seq).limit(_REPLAY_BATCH))).all()
        for row in rows:
            yield EventMessage.from_row(row)
        if len(rows) < _REPLAY_BATCH:
            return
        after = rows[-1].id if user.is_admin else rows[-1].owner_seq


async def event_stream(
    services: Services, stream: str, user: AuthUser, scope_id: int | None, after: int | None
) -> AsyncIterator[EventMessage]:
    """Replayed then live events, each once, in cursor order for the replay. Cursors are
    ``EventMessage.cursor_for(user.is_admin)``: the user's own sequence unless they see everyone's.

    Subscribing to pub/sub *before* reading the table closes the window in which an event could be
    neither in the table read nor in the live stream; live events up to the last cursor sent are dropped.
    """
    last = after
    while True:
        async with services.pubsub.subscribe(stream) as live:
            if last is None:
                # A live-only subscriber that lags must resume from where it joined, not replay
                # history from before it subscribed.
                last = (await _log_bounds(services, user))[1]
            else:
                async for message in _replay(services, stream, user, scope_id, last):
                    # In cursor order, after a GAP that may move `last` back (a cursor from the future).
                    last = message.cursor_for(user.is_admin)
                    yield message
            async for message in live:
                # Live events arrive in cursor order (the event feed reads them from the table, and
                # an owner's sequence follows it): those up to `last` were replayed, or came before a
                # live-only subscriber joined.
                if not _matches(message, user, scope_id):
                    continue
                cursor = message.cursor_for(user.is_admin)
                if cursor <= last:
                    continue
                last = cursor
                yield message
            if not live.lagged:
                return
            # Fell behind and was cut off: resume from the table where we were.
            logger.warning("a %s subscriber fell behind; catching up from the event table", stream)


def _event_context(ctx: Context, user: AuthUser) -> Context:
    """The context one event's fields are resolved with: the websocket's, with loaders of the event's
    own that cache. The event's check that its object still exists (`present`) and its fields' loads
    then see the same rows, however long the websocket lives and whatever is deleted in between."""
    return dataclasses.replace(ctx, loaders=Loaders(ctx.services.db, caller=user))


async def _still_there(loaders: Loaders, item: T | None) -> T | None:
    """The event's object, or None if it (or a row it cannot be shown without, such as an image's
    store) was deleted since the event: the event then says only its kind and id."""
    kept = await t.present(loaders, [] if item is None else [item])
    return kept[0] if kept else None


@strawberry.type
class Subscription:
    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="Events for images, optionally only those in one dataset; `after` replays events "
        "after that cursor."
    )
    async def representations(
        self, info: Info[Any, Any], dataset: strawberry.ID | None = None, after: int | None = None
    ) -> AsyncGenerator[t.RepresentationEvent, None]:
        ctx = context_of(info)
        user = await ctx.current_user()
        if after is not None and after < 0:
            raise BadUserInput("after must not be negative")
        scope_id = None
        if dataset is not None:
            async with ctx.services.db.read() as session:
                scope_id = (await get_owned(session, m.Dataset, dataset, user)).id
        async for message in event_stream(ctx.services, "representation", user, scope_id, after):
            event = _event_context(ctx, user)
            rep = None
            if message.kind in ("CREATE", "UPDATE"):
                loaders = event.loaders
                rep = await _still_there(loaders, await loaders.representation.load(message.object_id))
            yield t.RepresentationEvent(
                cursor=message.cursor_for(user.is_admin),
                kind=t.EventKind(message.kind),
                id=strawberry.ID(str(message.object_id)) if message.kind != "GAP" else None,
                representation=rep,
                _context=event,
            )

    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="Events for the ROIs of one image; `after` replays events after that cursor."
    )
    async def rois(
        self, info: Info[Any, Any], representation: strawberry.ID, after: int | None = None
    ) -> AsyncGenerator[t.RoiEvent, None]:
        ctx = context_of(info)
        user = await ctx.current_user()
        if after is not None and after < 0:
            raise BadUserInput("after must not be negative")
        async with ctx.services.db.read() as session:
            scope_id = (await get_owned(session, m.Representation, representation, user)).id
        async for message in event_stream(ctx.services, "roi", user, scope_id, after):
            event = _event_context(ctx, user)
            roi = None
            if message.kind in ("CREATE", "UPDATE"):
                roi = await _still_there(event.loaders, await event.loaders.roi.load(message.object_id))
            yield t.RoiEvent(
                cursor=message.cursor_for(user.is_admin),
                kind=t.EventKind(message.kind),
                id=strawberry.ID(str(message.object_id)) if message.kind != "GAP" else None,
                roi=roi,
                _context=event,
            )
