"""The session's data plane: upload images and tables, open them lazily, compute off the event loop.

:class:`DataPlaneMixin` is mixed into :class:`mikro.Mikro`; it uses the session's grants
(``requestUpload`` / ``requestAccess`` via :meth:`Mikro.grant_provider`), its worker-thread limiter and
the typed operations, and leaves all pixel work to :mod:`mikro.datalayer` (worker threads, obstore's
sync API). An image becomes visible only once its data is in place: one ``createRepresentation``
request then finishes the upload and records the image with its thumbnail (the PNG travels in that
request; an image of one shard sends only the thumbnail's size, and the server makes the PNG when it
is first read).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import anyio.lowlevel

from mikro._exceptions import StorageError, ValidationError
from mikro.api._enums import StoreKind
from mikro.client._image_request import ImageRequest, Registrar, image_request
from mikro.client._registrations import Registrations
from mikro.client._reservations import UploadReservations
from mikro.client._signatures import takes_arguments_of
from mikro.datalayer import (
    ARRAY_PATH,
    BlockingTableData,
    GrantedStore,
    GrantProvider,
    TableData,
    freeze_startup_heap,
    open_dataarray,
    write_table,
)
from mikro.datalayer import compute as compute_off_loop
from mikro.datalayer._warmup import import_pixel_stack

if TYPE_CHECKING:
    import xarray as xr

    from mikro.api import Grant, Representation, Table, ZarrStore

__all__ = ["DataPlaneMixin"]

log = logging.getLogger(__name__)

#: Read stores (grant + obstore client) kept per session for the images opened most recently.
READ_STORES_KEPT = 64
#: How long cleanup after a failed upload may take (it runs shielded from cancellation).
CLEANUP_SECONDS = 10.0


class _Session(Protocol):
    """What the data plane uses of the session (implemented by :class:`mikro.Mikro`)."""

    @property
    def thread_limiter(self) -> anyio.CapacityLimiter: ...

    @property
    def local_limiter(self) -> anyio.CapacityLimiter: ...

    @property
    def reservations(self) -> UploadReservations: ...

    @property
    def registrations(self) -> Registrations: ...

    def grant_provider(self, store_id: Any, write: bool = False) -> GrantProvider: ...

    def _on_loop_thread(self) -> bool: ...

    async def get_representation(self, id: Any) -> Representation: ...

    async def delete_representation(self, representation: Any) -> str: ...

    async def release_uploads(self, stores: Iterable[Any]) -> list[str]: ...

    async def list_representations(self, **filters: Any) -> list[Representation]: ...

    async def _create_table_row(self, input: Mapping[str, Any]) -> Table: ...


def _array_path(store: ZarrStore) -> str:
    if store.array_path is not None:
        return store.array_path
    # Stores finished before arrayPath existed recorded the array's own path in ``path`` (``<key>/0``
    # for an OME-Zarr group); reads are granted on the store key, so the array lives at the difference.
    if store.key and store.key in store.path:
        rest = store.path.rsplit(store.key, 1)[1].strip("/")
        return rest
    return ARRAY_PATH


class DataPlaneMixin:
    """Methods of :class:`mikro.Mikro` that move pixels and tables."""

    def _s(self) -> _Session:
        # Every data-plane entry point passes here: the first one freezes the start-up heap so that
        # garbage collections do not stall the event loop while pixels move (see datalayer._gc).
        freeze_startup_heap()
        return cast("_Session", self)

    async def _new_store(self, kind: str) -> tuple[GrantedStore, str]:
        """A fresh store reserved on the server and its id; refreshed with write grants."""
        return self._granted(await self._s().reservations.take(kind))

    async def _new_stores(self, kind: str, count: int) -> list[tuple[GrantedStore, str]]:
        """``count`` fresh stores (see `_new_store`), taken from the reservations at once."""
        return [self._granted(grant) for grant in await self._s().reservations.take_many(kind, count)]

    def _small_writes_limiter(self, grant: Grant) -> anyio.CapacityLimiter:
        """Bounds the worker threads writing small objects under ``grant``. On a folder store, that work
        is short system calls on local files (`local_limiter`). On S3, each write waits on the network,
        so more threads help (`thread_limiter`)."""
        session = self._s()
        return session.local_limiter if grant.kind is StoreKind.FILE else session.thread_limiter

    def _granted(self, grant: Grant) -> tuple[GrantedStore, str]:
        storage_grant = grant.to_storage_grant()
        provider = self._s().grant_provider(storage_grant.store_id, write=True)
        return GrantedStore(provider, grant=storage_grant), storage_grant.store_id

    # -- images --------------------------------------------------------------------------------------

    @takes_arguments_of(image_request)
    async def create_representation(self, *args: Any, **kwargs: Any) -> Representation:
        """Upload an image and create its ``Representation``; returns it with its thumbnail.

        ``data`` is an ``xarray.DataArray`` (dims and pixel size taken from it), a numpy array or a dask
        array (``dims`` needed unless it is 2-D: a subset of ``c, t, z, y, x`` in the array's order).
        Dask inputs are streamed shard by shard. ``pixel_size`` maps dims to sizes (``{"x": 0.1, ...}``
        in micrometres, seconds for t) or is a ``PhysicalSize``. The pixels are stored in OME axis
        order (``t, c, z, y, x``), so ``rep.dims`` may list the dims in a different order than given.
        ``progress(done, total)`` gets uncompressed bytes after each shard. ``compression`` is
        ``"blosc-lz4"`` (default: cheapest per GiB), ``"blosc-zstd"`` (smaller), ``"zstd"`` or None.
        ``pyramid``: ``"auto"`` (default) adds levels reduced 2x in y/x until the coarsest fits in 1024
        pixels (images that already fit get none), an int adds that many levels, None none; they are
        built from the blocks of level 0 as it uploads (mean for intensity images, nearest for the
        ``MASK`` / ``LABEL`` varieties) and read with ``rep.levels`` / ``rep.data_at(level)``.

        ``acquisition`` (an :class:`mikro.api.Acquisition` or a mapping of its fields) records how the
        image was acquired; ``source_fingerprint`` / ``source_scene`` / ``source_scene_name`` /
        ``source_scene_count`` the file (and scene) it came from (``m.ingest`` sets them; queryable with
        ``list_representations``). ``limiter`` bounds the worker threads of this upload, and so the
        shards it holds in memory at once (default: the session's ``thread_limiter``).
        ``original_file`` (a ``File`` or its id, see :meth:`upload_file`) records the file the image was
        made from (``rep.original_file``).

        Nothing is visible on the server until the data is complete: a failure or cancellation at any
        step leaves no ``Representation`` behind (and the objects written so far are deleted).
        Bad input raises :class:`mikro.ValidationError` before anything is sent.
        """
        await import_pixel_stack()  # the session's warm-up: checking the image needs dask and xarray
        request = image_request(*args, **kwargs)
        # Concurrent uploads share registration requests (see _registrations).
        return await self._create_prepared(request, self._s().registrations)

    async def _create_prepared(self, request: ImageRequest, registrar: Registrar) -> Representation:
        """Upload a validated image, then register it with ``registrar``; on any failure or cancellation
        remove what was made (objects, store, row)."""
        session = self._s()
        with session.reservations.uploading("ZARR"):
            store, store_id = await self._new_store("ZARR")
            result = await request.write(store, session.thread_limiter)
            written = list(result.keys)
            rep: Representation | None = None
            creating = False
            try:
                creating = True
                # Shielded: a cancellation arriving mid-request must not leave us unsure whether the server
                # committed the row (it takes effect at the checkpoint below, and the row is then removed).
                # The server finishes the upload in the same request, from the metadata sent with it.
                with anyio.CancelScope(shield=True):
                    rep = created = await registrar.register(request.registration(store_id, result))
                await anyio.lowlevel.checkpoint()
            except BaseException:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                    maybe = creating and registrar.may_leave_rows
                    await self._remove_row(rep, request.name, store_id, maybe_created=maybe)
                    await self._give_back(store, store_id, written)
                raise
            return created

    async def _give_back(self, store: GrantedStore, store_id: str, written: list[str]) -> None:
        """Delete a failed upload's objects, then give its store back so no unfinished row is left."""
        await _discard(store, written)
        try:
            await self._s().release_uploads([store_id])
        except Exception as exc:
            # Already gone with its representation, or the server is unreachable: the objects are.
            log.debug("store %s of a failed upload was not released: %s", store_id, exc)

    async def _remove_row(
        self, rep: Representation | None, name: str, store_id: str, *, maybe_created: bool
    ) -> None:
        """Delete the row of a failed upload; if its creation was cut off mid-request, find it first."""
        session = self._s()
        try:
            if rep is None and maybe_created:
                # The server may have committed a row whose answer never arrived (cancelled, timed out).
                found = await session.list_representations(name_contains=name, limit=1000)
                rep = next((r for r in found if r.store.id == store_id), None)
            if rep is not None:
                await session.delete_representation(rep.id)
        except Exception as exc:
            log.warning("could not remove the representation of failed upload %s: %s", store_id, exc)

    def open_representation_data(self, rep: Representation, level: int = 0) -> xr.DataArray:
        """``rep.data`` (``rep.data_at(level)``): a lazy ``xarray.DataArray`` (dask) over the image (one
        of its pyramid's levels, coordinates in physical units); no I/O until computed.

        Each dask task fetches only the chunks it touches, in dask's worker threads, with a read grant
        refreshed as needed. Compute with ``await m.compute(expr)``: a bare ``.compute()`` / ``.values``
        inside ``async def`` blocks the event loop for the whole download.
        """
        store = rep.store
        if store.shape is None or store.chunks is None or store.dtype is None:
            raise StorageError(f"store {store.id} of representation {rep.id} has no finished zarr data")
        levels = store.levels
        if level != 0 and not 0 <= level < len(levels):
            raise ValidationError(f"representation {rep.id} has {len(levels) or 1} levels; no level {level}")
        dims = store.dimension_names or rep.dims
        pixel_size = rep.physical_size.model_dump() if rep.physical_size is not None else {}
        shape, chunks, shards, path = store.shape, store.chunks, store.shards, _array_path(store)
        token = f"store-{store.id}"
        if level:
            chosen = levels[level]
            shape, chunks, shards, path = chosen.shape, chosen.chunks, chosen.shards, chosen.path
            factors = dict(zip(dims, chosen.scale, strict=True))
            pixel_size = {d: v * factors[d] for d, v in pixel_size.items() if v is not None and d in factors}
            token = f"{token}-level-{level}"
        return open_dataarray(
            self._reader_store(store.id),
            shape=shape,
            chunks=chunks,
            shards=shards or chunks,
            dtype=store.dtype,
            dims=dims,
            pixel_size=pixel_size,
            channel_names=[c.name or "" for c in rep.channels] or None,
            name=rep.name,
            token=token,
            array_path=path,
            attrs={"representation": rep.id, "level": level},
        )

    def _open_data_plane(self) -> None:
        """The data plane's per-session state; the session calls this when it opens."""
        # One read store per store id and session (the most recently used few): its grant and HTTP
        # connections serve every `rep.data` of that image. `rep.data` may be called from any thread
        # (the sync facade), hence a thread lock rather than an anyio one.
        self._read_lock = threading.Lock()
        self._read_stores: OrderedDict[str, GrantedStore] = OrderedDict()

    def _reader_store(self, store_id: str) -> GrantedStore:
        with self._read_lock:
            cache = self._read_stores
            found = cache.get(store_id)
            if found is None:
                found = cache[store_id] = GrantedStore(self._s().grant_provider(store_id))
                while len(cache) > READ_STORES_KEPT:
                    cache.popitem(last=False)
            cache.move_to_end(store_id)
            return found

    async def compute(self, expr: Any) -> Any:
        """Compute a lazy (dask-backed) object in a worker thread; the event loop keeps running.

        ``await m.compute(rep.data.max())`` works the same under asyncio and trio. Cancelling waits for
        the computation under way (dask cannot be interrupted), then raises.
        """
        await import_pixel_stack()  # dask's first compute imports distributed: not on this loop
        return await compute_off_loop(expr, limiter=self._s().thread_limiter)

    # -- tables --------------------------------------------------------------------------------------

    async def create_table(
        self,
        table: Any,
        *,
        name: str,
        origins: Iterable[Any] = (),
        tags: Iterable[str] = (),
    ) -> Table:
        """Store a pandas DataFrame or pyarrow Table as parquet and create its ``Table``."""
        session = self._s()
        with session.reservations.uploading("PARQUET"):
            store, store_id = await self._new_store("PARQUET")
            written = await write_table(store, table, limiter=session.thread_limiter)
            try:
                # Shielded like the representation's row: never unsure whether the server committed it.
                with anyio.CancelScope(shield=True):
                    table_row = await session._create_table_row(
                        {"store": store_id, "name": name, "origins": list(origins), "tags": list(tags)}
                    )
                return table_row
            except BaseException:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                    await self._give_back(store, store_id, [written.key])
                raise

    def open_table_data(self, table: Table) -> TableData | BlockingTableData:
        """``table.data``: a handle on the parquet object; ``await table.data.arrow()`` / ``.pandas()``.

        Outside the session's event loop thread (the sync facade, a worker thread) the handle's
        ``arrow()`` / ``pandas()`` block and return the table instead of a coroutine.
        """
        data = TableData(self._reader_store(table.store.id), limiter=self._s().thread_limiter)
        return data if self._s()._on_loop_thread() else data.blocking()


async def _discard(store: GrantedStore, keys: list[str]) -> None:
    if not keys:
        return
    try:
        await anyio.to_thread.run_sync(store.delete, keys, abandon_on_cancel=True)
    except Exception as exc:
        log.warning("could not delete %d objects of a failed upload: %s", len(keys), exc)
