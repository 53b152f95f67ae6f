"""Everything a request needs, set up once per server: database, object store, pub/sub, worker threads."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import anyio
from anyio.abc import TaskGroup
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from mikro.server._auth import Authenticator, TokenCache, ensure_admin
from mikro.server._data_dir import prepare_data_dir
from mikro.server._database import Database, is_foreign_key_violation, whole
from mikro.server._errors import Conflict, NotFound
from mikro.server._event_feed import EventFeed, lock_event_order
from mikro.server._locks import exclusive
from mikro.server._models import Event, IdempotencyRecord, Meta, User, utcnow
from mikro.server._objects import ObjectStorage
from mikro.server._pubsub import EventMessage, PubSub
from mikro.server._settings import Settings
from mikro.server._store_cleanup import collect_abandoned_uploads, sweep_deleted_prefixes

__all__ = [
    "PRUNED_THROUGH",
    "IdempotencyClaim",
    "KeyInUse",
    "Services",
    "Tx",
    "WriteTx",
    "idempotency_claim",
    "note_secrets",
]

logger = logging.getLogger("mikro.server")
T = TypeVar("T")

PRUNED_THROUGH = "events_pruned_through"


@dataclass
class IdempotencyClaim:
    """The ``Idempotency-Key`` of the mutation request being served.

    Its row is written by the request's first write transaction, in that transaction: the key is
    claimed exactly when the mutation's effects commit, with no transaction of its own. A second
    request with the same key then fails on the row's unique key and is answered from the first.
    """

    user_id: int
    key: str
    request_hash: str
    written: bool = False  # the claim row has been committed
    conflict: bool = False  # another request holds this key
    # Secrets handed out by this request, (store id, write, {secret value: field name}): the stored
    # answer holds placeholders in their place, and a replay re-issues them.
    secrets: list[tuple[int, bool, dict[str, str]]] = field(default_factory=list)

    def insert(self, session: Session) -> None:
        """Write the claim's row (in a write transaction's job, see `Database.run_write`)."""
        # A Core insert: no ORM unit of work for a row nobody reads back.
        row = {"user_id": self.user_id, "key": self.key, "request_hash": self.request_hash}
        try:
            session.execute(insert(_IDEMPOTENCY).values(**row))
        except IntegrityError:
            self.conflict = True
            raise KeyInUse("this Idempotency-Key is already in use") from None


class KeyInUse(Conflict):
    """Raised inside a mutation whose idempotency key another request holds; never reaches the client,
    which gets the other request's answer instead."""


_EVENTS = cast(Table, Event.__table__)
# Rows are matched to their cursors by (owner, owner_seq), unique: asked to sort RETURNING by parameter
# order, SQLAlchemy sends SQLite one INSERT per row (a trip to the connection's thread each).
_INSERT_EVENTS = insert(_EVENTS).returning(_EVENTS.c.id, _EVENTS.c.owner_id, _EVENTS.c.owner_seq)
_USERS = cast(Table, User.__table__)
_IDEMPOTENCY = cast(Table, IdempotencyRecord.__table__)

_CLAIM: ContextVar[IdempotencyClaim | None] = ContextVar("mikro_idempotency_claim", default=None)


def note_secrets(store_id: int, write: bool, secrets: dict[str, str]) -> None:
    """Tell the pending idempotency claim (if any) which secrets this request's answer carries."""
    claim = _CLAIM.get()
    if claim is not None and secrets:
        claim.secrets.append((store_id, write, secrets))


@contextmanager
def idempotency_claim(claim: IdempotencyClaim) -> Iterator[IdempotencyClaim]:
    """Make ``claim`` the pending claim of the mutations run inside this block."""
    token = _CLAIM.set(claim)
    try:
        yield claim
    finally:
        _CLAIM.reset(token)


class _Events:
    """The events of one write transaction: recorded while it runs, written just before it commits and
    published once it has committed."""

    def __init__(self) -> None:
        self.events: list[EventMessage] = []
        self._pending: list[tuple[str, str, Sequence[tuple[int, int | None, int]]]] = []

    def record(self, stream: str, kind: str, object_id: int, scope_id: int | None, owner_id: int) -> None:
        self.record_many(stream, kind, [(object_id, scope_id, owner_id)])

    def record_many(self, stream: str, kind: str, objects: Sequence[tuple[int, int | None, int]]) -> None:
        """Record events of several ``(object_id, scope_id, owner_id)``; written by ``write_events``."""
        if objects:
            self._pending.append((stream, kind, list(objects)))

    def _write_events(self, session: Session) -> None:
        """The recorded events in one statement, as the transaction's last writes.

        Last, because on PostgreSQL they are written under the event-order lock, which is held until
        commit: a transaction that took it and then went on to change rows could wait for a row that
        another transaction locked before queueing for the same lock, a deadlock (a ROI created on an
        image while the image is deleted was one). Taken last, its holder only touches the users'
        ``event_seq``, which nothing changes outside this lock. Each event's id is its cursor.
        """
        values: list[dict[str, Any]] = [
            {"stream": stream, "kind": kind, "object_id": o, "scope_id": scope, "owner_id": owner}
            for stream, kind, objects in self._pending
            for o, scope, owner in objects
        ]
        self._pending.clear()
        if not values:
            return
        lock_event_order(session)
        # Each owner's cursors, taken from their user row under the event-order lock (or SQLite's one
        # writer): in commit order, and never reused, not even after their events were pruned.
        counts = Counter(value["owner_id"] for value in values)
        next_seq: dict[int, int] = {}
        for owner, count in sorted(counts.items()):
            newest = session.scalar(
                update(_USERS)
                .where(_USERS.c.id == owner)
                .values(event_seq=_USERS.c.event_seq + count)
                .returning(_USERS.c.event_seq)
            )
            if newest is None:
                raise LookupError(f"an event's owner {owner} is not a user")
            next_seq[owner] = int(newest) - count + 1
        for value in values:
            value["owner_seq"] = next_seq[value["owner_id"]]
            next_seq[value["owner_id"]] += 1
        found = session.execute(_INSERT_EVENTS, values)
        cursor_of = {(owner, seq): int(cursor) for cursor, owner, seq in found.all()}
        for value in values:
            self.events.append(
                EventMessage(
                    cursor_of[value["owner_id"], value["owner_seq"]],
                    value["stream"],
                    value["kind"],
                    value["object_id"],
                    value["scope_id"],
                    value["owner_id"],
                    value["owner_seq"],
                )
            )


class Tx(_Events):
    """One write transaction through the async ORM (`Services.transaction`)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__()
        self.session = session

    async def write_events(self) -> None:
        if self._pending:
            await self.session.run_sync(self._write_events)


class WriteTx(_Events):
    """One write transaction run as a synchronous job (`Services.write`)."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session


def _pending_claim() -> IdempotencyClaim | None:
    """The request's idempotency claim, if its row is still to be written by this transaction."""
    claim = _CLAIM.get()
    if claim is not None and (claim.written or claim.conflict):
        return None
    return claim


@contextmanager
def _refers_to_deleted() -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        # On PostgreSQL an object read in this transaction can be deleted by another one before
        # this one's row referring to it is written (a ROI on an image being deleted).
        if is_foreign_key_violation(exc):
            raise NotFound("an object this change refers to was deleted meanwhile") from None
        raise


class Services:
    """Use as ``async with Services(settings)``: the app's lifespan holds it open."""

    def __init__(self, settings: Settings, pubsub: PubSub | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.sqlalchemy_url())
        self._feed = EventFeed(
            self.db, buffer=settings.pubsub_buffer, poll_interval=settings.event_poll_interval
        )
        self.pubsub: PubSub = pubsub or self._feed
        self.auth = Authenticator(
            self.db, TokenCache(settings.auth_cache_ttl, settings.auth_cache_size, settings.auth_epoch_file)
        )
        self._storage: ObjectStorage | None = None
        self._io_threads: ThreadPoolExecutor | None = None
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> Services:
        await anyio.to_thread.run_sync(prepare_data_dir, self.settings)
        self._io_threads = ThreadPoolExecutor(self.settings.io_threads, thread_name_prefix="mikro-io")
        # boto3/obstore construction touches files and the network: keep it off the loop.
        self._storage = await anyio.to_thread.run_sync(ObjectStorage, self.settings)
        await self.db.__aenter__()
        try:
            created = await ensure_admin(self.db, self.settings)
            self.auth.cache.clear()
            if created is not None:
                print(f"mikro: admin token written to {created.resolve()}", file=sys.stderr, flush=True)
            limits = self.settings
            logger.info(
                "request limits: body %d bytes, %d tokens, depth %d, %d aliases, cost %d, %g s",
                limits.max_request_bytes,
                limits.max_query_tokens,
                limits.max_query_depth,
                limits.max_query_aliases,
                limits.max_query_cost,
                limits.request_timeout,
            )
            await self._maintenance(startup=True)
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            self._task_group.start_soon(self._maintenance_loop)
            if self.pubsub is self._feed:
                self._task_group.start_soon(self._feed.run)
        except BaseException:
            await self.db.__aexit__(None, None, None)
            await self._stop_io_threads()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
                await self._task_group.__aexit__(None, None, None)
        finally:
            try:
                await self.db.__aexit__(None, None, None)
            finally:
                await self._stop_io_threads()

    async def _stop_io_threads(self) -> None:
        if self._io_threads is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._io_threads.shutdown)

    @property
    def storage(self) -> ObjectStorage:
        assert self._storage is not None, "Services used outside `async with`"
        return self._storage

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking object-store or STS work, in a worker thread (``io_threads`` of them).

        asyncio's ``run_in_executor`` (the server runs on asyncio) at a third of the CPU of anyio's
        ``to_thread`` per call; cancelled as ``to_thread`` is: the caller waits for the call to end (an
        object-store delete is not left running unseen) and then stops."""
        assert self._io_threads is not None, "Services used outside `async with`"
        return await whole(asyncio.get_running_loop().run_in_executor(self._io_threads, fn, *args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One write transaction through the async ORM, for the mutations seldom sent (the frequent
        ones run theirs as a synchronous job: `write`)."""
        claim = _pending_claim()
        with _refers_to_deleted():
            async with self.db.write() as session:
                tx = Tx(session)
                if claim is not None:
                    await session.run_sync(claim.insert)
                yield tx
                await tx.write_events()
        await self._committed(claim, tx)

    async def write(self, job: Callable[[WriteTx], T]) -> T:
        """``job`` as one write transaction (see `Database.run_write`): synchronous, given a `WriteTx`
        whose events are written before the commit and published after it; the request's idempotency
        claim goes in with it, as in `transaction`."""
        claim = _pending_claim()
        txs: list[WriteTx] = []

        def transaction(session: Session) -> T:
            tx = WriteTx(session)
            txs.append(tx)
            if claim is not None:
                claim.insert(session)
            result = job(tx)
            tx._write_events(session)
            return result

        with _refers_to_deleted():
            result = await self.db.run_write(transaction)
        await self._committed(claim, txs[-1])
        return result

    async def _committed(self, claim: IdempotencyClaim | None, tx: _Events) -> None:
        if claim is not None:
            claim.written = True
        for message in tx.events:
            await self.pubsub.publish(message.stream, message)

    async def _maintenance_loop(self) -> None:
        while True:
            await anyio.sleep(self.settings.maintenance_interval)
            try:
                await self._maintenance(startup=False)
            except Exception:
                logger.exception("maintenance failed")

    async def _maintenance(self, *, startup: bool) -> None:
        """Prune the event log and expired idempotency keys; delete abandoned uploads; sweep deleted
        stores' prefixes whose write credentials have expired. With several server processes on one
        database, one of them does it each time (the others skip the round)."""
        async with exclusive(self.db.engine, "maintenance") as held:
            if held:
                await self._prune(startup=startup and self.settings.recover_interrupted)
                await collect_abandoned_uploads(self, self.settings.abandoned_upload_age)
                await sweep_deleted_prefixes(self)

    async def _prune(self, *, startup: bool) -> None:
        now = utcnow()
        async with self.db.write() as session:
            cutoff = now - dt.timedelta(seconds=self.settings.event_retention)
            newest_old = await session.scalar(select(func.max(Event.id)).where(Event.created_at < cutoff))
            if newest_old is not None:
                # Each owner's replay reports a GAP from what is pruned now: their cursors it reached.
                pruned = select(func.max(Event.owner_seq)).where(
                    Event.owner_id == User.id, Event.id <= newest_old
                )
                owners = select(Event.owner_id).where(Event.id <= newest_old)
                await session.execute(
                    update(User)
                    .where(User.id.in_(owners))
                    .values(events_pruned_through=pruned.scalar_subquery())
                    .execution_options(synchronize_session=False)
                )
                await session.execute(delete(Event).where(Event.id <= newest_old))
                meta = await session.get(Meta, PRUNED_THROUGH)
                if meta is None:
                    session.add(Meta(key=PRUNED_THROUGH, value=str(newest_old)))
                else:
                    meta.value = str(max(int(meta.value), newest_old))
            keys_cutoff = now - dt.timedelta(seconds=self.settings.idempotency_ttl)
            await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < keys_cutoff))
            if startup:
                # A request that was running when the server died left its key pending forever.
                await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.response.is_(None)))
