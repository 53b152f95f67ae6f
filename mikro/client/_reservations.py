"""Upload stores reserved ahead, so that many concurrent uploads cost one ``requestUploads``, not one each.

Every image upload needs a fresh store and a write grant. Asking for them one at a time costs a round
trip and a server transaction per image, which dominated the reference server's CPU during ingest. A
session's :class:`UploadReservations` hands each upload one store from a pool and, when the pool runs
dry, reserves twice as many stores as there are uploads of that kind in progress (at most
``RESERVE_AT_MOST``) in one request. A lone upload reserves exactly one store, as before. A batch that
takes its stores as it goes (`reserve_ahead`) has the next request made in the background while the
pool still holds some, so that its writes never wait for one. Reservations left when the session closes
are given back with ``releaseUploads``; a session that dies without closing leaves them unfinished on
the server, like an interrupted upload.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from mikro.api import Grant

__all__ = ["RESERVE_AT_MOST", "UploadReservations"]

log = logging.getLogger(__name__)

#: Most stores reserved by one request (the server accepts up to 256): a batch of small images costs
#: the server one request per this many images.
RESERVE_AT_MOST = 256
#: How long giving back the unused reservations may take when the session closes.
RELEASE_SECONDS = 5.0
#: `reserve_ahead` asks for more when the pool holds fewer stores than this (and than the batch still
#: needs): a request of 256 takes the server tens of milliseconds, in which ~100 small images are written.
RESERVE_AHEAD_BELOW = RESERVE_AT_MOST // 2

RequestMany = Callable[[int, str], Awaitable[list["Grant"]]]
Release = Callable[[list[str]], Awaitable[object]]
StartSoon = Callable[[Callable[[], Coroutine[Any, Any, None]]], object]


def _seconds_left(grant: Grant, now: dt.datetime) -> float:
    expires = grant.expires_at if grant.expires_at.tzinfo else grant.expires_at.replace(tzinfo=dt.UTC)
    return (expires - now).total_seconds()


class UploadReservations:
    """A session's pool of reserved upload stores, by kind (``ZARR``, ``PARQUET``, ``MEDIA``).

    Used from the session's event loop only. Create it in the session's ``__aenter__`` (it makes an
    ``anyio.Lock``) and call :meth:`aclose` before the session's HTTP client closes.
    """

    def __init__(self, request_many: RequestMany, release: Release, start_soon: StartSoon) -> None:
        self._request_many = request_many
        self._release = release
        #: Starts a task in the session's task group (ended, shielded requests finished, before `aclose`).
        self._start_soon = start_soon
        self._ahead: set[str] = set()
        self._lock = anyio.Lock()
        # (grant, use-by time): a reservation is handed out only in the first half of its grant's life,
        # so that an upload never starts with a grant about to need a refresh.
        self._pool: defaultdict[str, deque[tuple[Grant, float]]] = defaultdict(deque)
        self._in_progress: defaultdict[str, int] = defaultdict(int)
        self._stale: list[str] = []

    @contextlib.contextmanager
    def uploading(self, kind: str, count: int = 1) -> Iterator[None]:
        """Count ``count`` uploads of ``kind`` as in progress: the demand the next reservation is sized by."""
        self._in_progress[kind] += count
        try:
            yield
        finally:
            self._in_progress[kind] -= count

    async def take(self, kind: str) -> Grant:
        """A reserved store of ``kind`` with its write grant; reserves more when none is left."""
        found = self._pop(kind)
        if found is not None:
            return found
        async with self._lock:
            found = self._pop(kind)  # another task may have refilled the pool meanwhile
            if found is not None:
                return found
            first, *rest = await self._reserve(kind)
            self._pool[kind].extend(self._entries(rest))
        try:
            await anyio.lowlevel.checkpoint()
        except BaseException:
            # Cancelled before the caller got it: back to the pool, or the store would stay reserved
            # (unfinished) on the server until it collects abandoned uploads.
            self._pool[kind].extendleft(self._entries([first]))
            raise
        return first

    async def take_many(self, kind: str, count: int) -> list[Grant]:
        """``count`` reserved stores of ``kind`` (see `take`): from the pool without a checkpoint each,
        the pool refilled as it runs dry. Cancelled, it puts back the ones taken."""
        taken: list[Grant] = []
        try:
            while len(taken) < count:
                now = anyio.current_time()  # once per run of pops: the clock was a loop's cost per store
                while len(taken) < count and (found := self._pop(kind, now)) is not None:
                    taken.append(found)
                if len(taken) < count:
                    taken.append(await self.take(kind))
        except BaseException:
            self._pool[kind].extendleft(reversed(self._entries(taken)))
            raise
        return taken

    async def _reserve(self, kind: str) -> list[Grant]:
        """One request's stores (called holding the lock)."""
        # Twice the uploads in progress: the pool then runs dry (and every upload waits for the
        # next request) half as often. A lone upload still reserves exactly one.
        busy = self._in_progress[kind]
        count = 1 if busy <= 1 else min(2 * busy, RESERVE_AT_MOST)
        # Shielded: once the server has reserved the stores, they must reach the pool (or be
        # released at close), not vanish with a cancelled task.
        with anyio.CancelScope(shield=True):
            grants = await self._request_many(count, kind)
        return grants

    def reserve_ahead(self, kind: str, wanted: int) -> None:
        """A batch still needs ``wanted`` stores of ``kind``: if the pool runs low, reserve more now, in
        the background, rather than when it is empty (the batch's writes would stop for the request)."""
        if kind in self._ahead or not self._runs_low(kind, wanted):
            return
        self._ahead.add(kind)
        try:
            self._start_soon(partial(self._refill, kind, wanted))
        except RuntimeError:
            # The session is closing (its task group has ended): the next `take` asks itself.
            self._ahead.discard(kind)

    def _runs_low(self, kind: str, wanted: int) -> bool:
        return len(self._pool[kind]) < min(wanted, RESERVE_AHEAD_BELOW)

    async def _refill(self, kind: str, wanted: int) -> None:
        try:
            async with self._lock:
                # A `take` that found the pool empty may have refilled it while this waited.
                if self._runs_low(kind, wanted):
                    self._pool[kind].extend(self._entries(await self._reserve(kind)))
        except Exception as exc:
            # The next `take` that finds the pool empty asks again, and gets the error itself.
            log.debug("reserving %s stores ahead failed: %s", kind, exc)
        finally:
            self._ahead.discard(kind)

    @staticmethod
    def _entries(grants: list[Grant]) -> list[tuple[Grant, float]]:
        # From each grant's expiry directly: its whole StorageGrant (made again when it is used) was a
        # few percent of the event loop's time per small image ingested.
        now, wall = anyio.current_time(), dt.datetime.now(dt.UTC)
        return [(g, now + _seconds_left(g, wall) / 2) for g in grants]

    def _pop(self, kind: str, now: float | None = None) -> Grant | None:
        pool = self._pool[kind]
        now = anyio.current_time() if now is None else now
        while pool:
            grant, use_by = pool.popleft()
            if now < use_by:
                return grant
            self._stale.append(str(grant.store_id))
        return None

    def unused(self) -> list[str]:
        """Store ids reserved and not handed out (or gone stale)."""
        return [*self._stale, *(str(g.store_id) for pool in self._pool.values() for g, _ in pool)]

    async def aclose(self) -> None:
        """Give back every reservation not used (best effort, shielded, bounded in time)."""
        stores = self.unused()
        self._pool.clear()
        self._stale.clear()
        if not stores:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_SECONDS):
            try:
                await self._release(stores)
            except Exception as exc:
                log.warning("could not give back %d reserved upload stores: %s", len(stores), exc)
