"""``create_representations``: many images uploaded at once and recorded all or nothing.

Every item is validated before anything is sent (an error names ``items[i]``). The uploads then run
concurrently; once all of them are on the store, their rows are created with ``createRepresentations``
requests (one transaction each). If an upload fails, a request fails, or the call is cancelled, every
item is undone: rows already created are deleted, and each upload deletes its objects and gives its
store back, so the batch leaves nothing behind.

A batch of small images (one shard each, no pyramid: a plate's fields) takes a shorter path,
`_SmallImages`: per image, an upload task with its own thread hops, store request and registration
wait cost more CPU than writing the image. There each worker-thread call writes several whole images
and builds their registrations, the images written are recorded while the next are written, and the
undo works on the batch as a whole.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
import anyio.lowlevel

from mikro._exceptions import GraphQLError, MikroError, ValidationError
from mikro.api._operations import wire_input
from mikro.client._image_request import ImageRequest, Registrar, image_request
from mikro.client._registrations import BATCH_AT_MOST, request_chunks, request_end
from mikro.datalayer import GrantedStore, ImageLayout, small_image_keys
from mikro.datalayer._warmup import import_pixel_stack

if TYPE_CHECKING:
    from mikro.api import Grant, Representation

__all__ = ["BatchMixin"]

log = logging.getLogger(__name__)

#: How long undoing a failed batch may take.
CLEANUP_SECONDS = 10.0

_INPUT_INDEX = re.compile(r"^inputs\[(\d+)\]: ")


class _Withdrawn(MikroError):
    """Another item of the batch failed, so this one is not recorded."""


class _Batch:
    """Waits for every item's finished upload, then records them all (or none)."""

    def __init__(self, session: Any, names: list[str]) -> None:
        self._session = session
        self._names = names
        self._inputs: dict[int, Mapping[str, Any]] = {}
        self._results: list[Representation] = []
        self._error: BaseException | None = None
        self._done = anyio.Event()
        self.may_leave_rows = False

    def item(self, index: int) -> Registrar:
        return _Item(self, index)

    def withdraw(self, error: BaseException) -> None:
        """An item failed before it was uploaded: nothing of the batch is recorded."""
        if not self._done.is_set():
            self._error = _Withdrawn(f"not created: another item of the batch failed ({error!r})")
            self._done.set()

    async def register(self, index: int, input: Mapping[str, Any]) -> Representation:
        self._inputs[index] = input
        if len(self._inputs) == len(self._names) and not self._done.is_set():
            try:
                await self._send()
            finally:
                self._done.set()
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._results[index]

    async def _send(self) -> None:
        order = sorted(self._inputs)
        for indices in request_chunks([self._inputs[i] for i in order]):
            chunk = [order[i] for i in indices]
            try:
                self._results += await self._session._create_representation_rows(
                    [self._inputs[i] for i in chunk]
                )
            except GraphQLError as exc:
                self._error = _named(exc, chunk, self._names)
            except Exception as exc:
                # No answer: this request's rows may have been committed.
                self.may_leave_rows = True
                self._error = exc
            if self._error is not None:
                await self._delete(self._results)
                self._results = []
                return

    async def _delete(self, reps: list[Representation]) -> None:
        await _delete(self._session, [rep.id for rep in reps])


def _named(exc: GraphQLError, chunk: Sequence[int], names: Sequence[str]) -> GraphQLError:
    """The server's error about ``inputs[j]`` of a request, as ``items[i] (name)`` of the batch."""
    message = exc.message
    match = _INPUT_INDEX.match(message) if len(chunk) > 1 else None
    index = chunk[int(match.group(1))] if match else (chunk[0] if len(chunk) == 1 else None)
    if index is not None:
        rest = message[match.end() :] if match else message
        message = f"items[{index}] ({names[index]!r}): {rest}"
    return type(exc)(message, code=exc.code, path=exc.path, errors=exc.errors)


#: Deletions of a failed batch's rows in flight at once: one by one, undoing a few hundred rows could
#: outlast the undo's time limit under load.
_DELETES_IN_FLIGHT = 16


async def _delete(session: Any, ids: list[str]) -> None:
    limiter = anyio.CapacityLimiter(_DELETES_IN_FLIGHT)

    async def delete(rep_id: str) -> None:
        async with limiter:
            try:
                await session.delete_representation(rep_id)
            except Exception as exc:
                log.warning("could not delete representation %s of a failed batch: %s", rep_id, exc)

    async with anyio.create_task_group() as tg:
        for rep_id in ids:
            tg.start_soon(delete, rep_id)


#: Images one worker-thread call of a small-image batch writes: few enough that the first registration
#: can go while the rest are written, many enough that the thread hops cost little per image.
RUN_IMAGES = 8
#: Fewest written images a batch's registration request waits for (unless nothing else is left to
#: write): each request costs the server a fixed share, about as much as 10-30 small images' rows (a
#: batch of 100 recorded in 2-3 requests instead of 1 cost the server ~0.1 ms more per image), so a
#: batch of 100 goes in two.
REGISTER_AT_LEAST = 48


class _SmallImages:
    """A batch of small images, written and recorded as a pipeline: worker-thread calls write runs of
    `RUN_IMAGES` whole images (stores taken from the session's reservations as they go) while the
    images written so far are recorded, in order, by `request_chunks`-sized ``createRepresentations``
    requests. So the server records one part while the client writes the next, instead of the two
    taking turns (measured: the cores idled half the time). On any failure or cancellation, all of it
    is undone. With ``ids_only`` (an ingest's group) the requests answer only the images' ids (what
    `run` returns then), and wait for up to `BATCH_AT_MOST` images each."""

    def __init__(
        self,
        session: Any,
        requests: list[ImageRequest],
        layouts: list[ImageLayout],
        *,
        ids_only: bool = False,
    ) -> None:
        self._session = session
        self._ids_only = ids_only
        self._at_least = BATCH_AT_MOST if ids_only else REGISTER_AT_LEAST
        self._requests = requests
        self._layouts = layouts
        self._names = [r.name for r in requests]
        #: Each item's reserved store: its grant (taken on the loop) and the store made of it (in the
        #: worker thread that writes it: making one was a tenth of the event loop's time per image).
        self._grants: list[Grant | None] = [None] * len(requests)
        self._stores: list[GrantedStore | None] = [None] * len(requests)
        self._inputs: list[Mapping[str, Any]] = [{} for _ in requests]
        self._reps: list[Any] = []  # the Representations made, or their ids
        #: Items whose request got no answer: their rows may have been committed.
        self._uncertain: list[int] = []
        self._claimed = 0  # items handed to a writer
        self._finished = [False] * len(requests)
        self._written = 0  # items 0.._written-1 are all on the store
        self._writers = 0  # writers still running
        self._news = anyio.Event()  # set when a run is written or the writers end

    async def run(self) -> list[Any]:
        count = len(self._requests)
        with self._session._s().reservations.uploading("ZARR", count):
            try:
                await self._pipeline()
            except BaseException:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                    await self._undo()
                raise
        return self._reps

    async def _pipeline(self) -> None:
        # As many writers as the session's threads: on S3 they all wait on the network at once; on a
        # folder store they queue for fewer (see `_small_writes_limiter`), in the order they claimed.
        runs = -(-len(self._requests) // RUN_IMAGES)
        self._writers = min(runs, max(1, int(self._session._s().thread_limiter.total_tokens)))
        failures: list[Exception] = []

        async def guarded(task: Any, tg: anyio.abc.TaskGroup) -> None:
            try:
                await task()
            except Exception as exc:
                failures.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for _ in range(self._writers):
                tg.start_soon(guarded, self._writer, tg)
            tg.start_soon(guarded, self._recorder, tg)
        if failures:
            raise failures[0]

    async def _writer(self) -> None:
        session, count = self._session, len(self._requests)
        reservations = session._s().reservations
        try:
            while self._claimed < count:
                start = self._claimed
                end = self._claimed = min(start + RUN_IMAGES, count)
                self._grants[start:end] = await reservations.take_many("ZARR", end - start)
                reservations.reserve_ahead("ZARR", count - end)
                writes = session._small_writes_limiter(cast("Grant", self._grants[start]))
                await anyio.to_thread.run_sync(partial(self._write_run, start, end), limiter=writes)
                for i in range(start, end):
                    self._finished[i] = True
                    request, layout = self._requests[i], self._layouts[i]
                    if request.progress is not None:
                        request.progress(layout.nbytes, layout.nbytes)
                while self._written < count and self._finished[self._written]:
                    self._written += 1
                self._tell()
        finally:
            self._writers -= 1
            self._tell()

    def _write_run(self, start: int, end: int) -> None:
        for i in range(start, end):
            store, store_id = self._session._granted(cast("Grant", self._grants[i]))
            self._stores[i] = store
            result = self._requests[i].write_small(store, self._layouts[i])
            self._inputs[i] = wire_input(self._requests[i].registration(store_id, result))

    def _tell(self) -> None:
        news, self._news = self._news, anyio.Event()
        news.set()

    async def _recorder(self) -> None:
        """Records the written images in order, a request at a time, as enough of them are ready."""
        count = len(self._requests)
        while len(self._reps) < count:
            first = len(self._reps)
            ready = self._written - first
            if ready < min(self._at_least, count - first) and self._writers:
                await self._news.wait()
                continue
            if not ready:
                return  # the writers ended early: one failed, and its error ends the batch
            end = min(self._written, request_end(self._inputs, first))
            await self._register(list(range(first, end)))
            # The requests are shielded: a cancellation takes effect here, between them.
            await anyio.lowlevel.checkpoint()

    async def _register(self, chunk: list[int]) -> None:
        session, inputs = self._session, [self._inputs[i] for i in chunk]
        send = session._create_representation_ids if self._ids_only else session._create_representation_rows
        try:
            # Shielded: a cancellation arriving mid-request must not leave us unsure whether the server
            # committed the rows.
            with anyio.CancelScope(shield=True):
                made = await send(inputs)
            self._reps += made
        except GraphQLError as exc:
            raise _named(exc, chunk, self._names) from exc
        except Exception:
            self._uncertain = chunk
            raise

    async def _undo(self) -> None:
        """Delete the rows made, every object written, and give back the stores left without a row."""
        session = self._session
        await _delete(session, [rep if self._ids_only else rep.id for rep in self._reps])
        for i in self._uncertain:
            store_id = cast("Grant", self._grants[i]).store_id
            await session._remove_row(None, self._names[i], store_id, maybe_created=True)
        recorded = len(self._reps)
        taken = [(i, grant.store_id) for i, grant in enumerate(self._grants) if grant is not None]
        written = [(i, store) for i, store in enumerate(self._stores) if store is not None]

        def discard() -> None:
            for i, store in written:
                keys = small_image_keys(self._layouts[i], thumbnail=self._requests[i].thumbnail)
                try:
                    store.delete(keys)
                except Exception as exc:
                    log.warning("could not delete the objects of a failed upload: %s", exc)

        await anyio.to_thread.run_sync(discard, abandon_on_cancel=True)
        unrecorded = [store_id for i, store_id in taken if i >= recorded]
        if unrecorded:
            try:
                await session.release_uploads(unrecorded)
            except Exception as exc:
                # Stores whose rows were found and deleted above are gone already: release the rest.
                log.debug("releasing %d stores of a failed batch at once failed: %s", len(unrecorded), exc)
                for store_id in unrecorded:
                    try:
                        await session.release_uploads([store_id])
                    except Exception as one_exc:
                        log.debug("store %s of a failed upload was not released: %s", store_id, one_exc)


class _Item:
    def __init__(self, batch: _Batch, index: int) -> None:
        self._batch = batch
        self._index = index

    @property
    def may_leave_rows(self) -> bool:
        return self._batch.may_leave_rows

    async def register(self, input: Mapping[str, Any]) -> Representation:
        return await self._batch.register(self._index, input)


#: A batch's checked images and, for each, its layout when it is small (`ImageRequest.layout_if_small`).
PreparedBatch = tuple[list[ImageRequest], list[ImageLayout | None]]


def prepared_batch(items: Iterable[Mapping[str, Any]]) -> PreparedBatch:
    """`create_representations`' items checked (a `ValidationError` naming ``items[i]``) and the images
    prepared; blocking only on CPU, so that a caller with many may run it in a worker thread."""
    requests: list[ImageRequest] = []
    for i, item in enumerate(items):
        try:
            requests.append(image_request(**item))
        except (ValidationError, TypeError) as exc:
            name = item.get("name") if isinstance(item, Mapping) else None
            raise ValidationError(f"items[{i}] ({name!r}): {exc}") from exc
    return requests, [r.layout_if_small() for r in requests]


class BatchMixin:
    """:meth:`create_representations` of :class:`mikro.Mikro`."""

    async def create_representations(self, items: Iterable[Mapping[str, Any]]) -> list[Representation]:
        """Upload several images and create their ``Representation``\\ s, all or nothing; returned in
        the items' order.

        Each item is a mapping of :meth:`create_representation`'s arguments (``data`` and ``name``
        required)::

            reps = await m.create_representations(
                [{"data": plane, "name": f"field-{i}", "dataset": ds.id} for i, plane in enumerate(planes)]
            )

        Bad input raises :class:`mikro.ValidationError` naming ``items[i]`` before anything is sent.
        The images upload concurrently and each is recorded (in requests of up to 128 images) only once
        it is stored: small images in order while the later ones are still being written, others once
        all are stored. If any upload or request fails, or the call is cancelled, no image of the batch
        is left: rows created so far are deleted and the objects written removed.
        """
        await import_pixel_stack()  # the session's warm-up: checking the images needs dask and xarray
        prepared = prepared_batch(items)
        return cast("list[Representation]", await self._create_many(prepared, ids_only=False))

    async def _create_representation_batch(self, prepared: PreparedBatch) -> list[str]:
        """`create_representations` of items checked beforehand (`prepared_batch`, which an ingest runs
        in the worker thread that read its files), returning only the new images' ids: a batch of small
        images is then recorded by requests that ask the server for nothing else, one request for up to
        `BATCH_AT_MOST` images (an ingest's groups are several in flight: the server records one while
        the others are written)."""
        return cast("list[str]", await self._create_many(prepared, ids_only=True))

    async def _create_many(self, prepared: PreparedBatch, *, ids_only: bool) -> list[Any]:
        requests, layouts = prepared
        if not requests:
            return []
        if all(layout is not None for layout in layouts):
            small = cast("list[ImageLayout]", layouts)
            return await _SmallImages(self, requests, small, ids_only=ids_only).run()
        batch = _Batch(self, [r.name for r in requests])
        results: list[Representation | None] = [None] * len(requests)
        failures: list[Exception] = []
        create = cast(Any, self)._create_prepared

        async def one(i: int, tg: anyio.abc.TaskGroup) -> None:
            try:
                results[i] = await create(requests[i], batch.item(i))
            except Exception as exc:
                failures.append(exc)
                batch.withdraw(exc)
                tg.cancel_scope.cancel()  # the others' uploads stop and undo themselves

        try:
            async with anyio.create_task_group() as tg:
                for i in range(len(requests)):
                    tg.start_soon(one, i, tg)
        finally:
            done = [rep for rep in results if rep is not None]
            if (failures and done) or len(done) < len(requests):
                # Items that had finished when another failed (or the call was cancelled) are undone too.
                with anyio.CancelScope(shield=True):
                    await batch._delete(done)
        if failures:
            raise next((e for e in failures if not isinstance(e, _Withdrawn)), failures[0])
        made = cast("list[Representation]", results)
        return [rep.id for rep in made] if ids_only else made
