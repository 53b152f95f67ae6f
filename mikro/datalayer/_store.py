"""One store's objects, reached through obstore's SYNC API with credentials from a `GrantProvider`.

Every method here blocks: call them from worker threads (``anyio.to_thread.run_sync``) or from dask
tasks, never from the event loop. obstore's async API is avoided on purpose (it needs an asyncio loop,
so it fails under trio, and it made processes abort at exit).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import LocalStore, S3Store

from mikro._exceptions import GrantError, StorageError
from mikro.datalayer._file_reads import FILE_READS, LocalFile
from mikro.datalayer._grant import GrantProvider, StorageGrant
from mikro.datalayer._hashing import Hasher
from mikro.datalayer._local_copy import copy_file
from mikro.datalayer._shard import EncodedShard, RawShard, ShardPayload
from mikro.datalayer._staging import make_folder, staged, write_all, write_parts

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Credential
    from typing_extensions import Buffer

__all__ = ["GrantedStore", "StoreStats"]

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")

# obstore raises the builtin FileNotFoundError for a missing object (its own NotFoundError is kept here in
# case a store type raises that instead).
_MISSING = (NotFoundError, FileNotFoundError)

#: Refresh a grant this long before it expires (capped to a quarter of the grant's lifetime, so short
#: test grants still get refreshed before they run out rather than on every request).
REFRESH_MARGIN_SECONDS = 60.0

#: S3 clients kept for reuse. Building an obstore ``S3Store`` costs ~5 ms of CPU (an HTTP client and
#: its TLS roots) and a fresh connection pool; an upload of many images would pay that per image.
SHARED_S3_STORES = 32

_shared_lock = threading.Lock()
_shared_s3: OrderedDict[tuple[str | None, str | None, str, str | None], S3Store] = OrderedDict()

#: Stores rebuilt from pickles kept per process (`_rebuilt_store`), by provider.
REBUILT_STORES = 64

_rebuilt_lock = threading.Lock()
_rebuilt: OrderedDict[Any, GrantedStore] = OrderedDict()


def _rebuilt_store(provider: GrantProvider, grant: StorageGrant | None) -> GrantedStore:
    """The store a pickled `GrantedStore` becomes in this process (a dask.distributed worker).

    dask ships every task of an image with its own copy of the store. Copies with equal providers (a
    provider serves one store) become ONE store per process, so the tasks share one grant, refresh it
    once when it runs out, and share its S3 client (`_shared_s3_store`) and connections. The grant a copy
    carries replaces the one in hand when it lasts longer. An unhashable provider gets a store of its own.
    """
    try:
        hash(provider)
    except TypeError:
        return GrantedStore(provider, grant=grant)
    with _rebuilt_lock:
        store = _rebuilt.get(provider)
        if store is None:
            store = _rebuilt[provider] = GrantedStore(provider, grant=grant)
            while len(_rebuilt) > REBUILT_STORES:
                _rebuilt.popitem(last=False)
            return store
        _rebuilt.move_to_end(provider)
    store._offer(grant)
    return store


def _shared_s3_store(grant: StorageGrant) -> S3Store:
    """One bucket-rooted ``S3Store`` per endpoint, bucket and access key, shared by every store using it.

    The server hands the same temporary credentials to many stores (an upload batch), so all of them
    share one client and its connections. The credentials are fixed per entry: a refreshed grant comes
    with a new access key and so with its own entry.
    """
    cache_key = (grant.endpoint, grant.region, grant.bucket, grant.access_key_id)
    with _shared_lock:
        found = _shared_s3.get(cache_key)
        if found is not None:
            _shared_s3.move_to_end(cache_key)
            return found
    client_options: ClientConfig = {}
    if grant.endpoint and grant.endpoint.startswith("http://"):
        client_options["allow_http"] = True
    kwargs: dict[str, Any] = {}
    if grant.endpoint:
        kwargs["endpoint"] = grant.endpoint
    if grant.region:
        kwargs["region"] = grant.region
    if grant.access_key_id is None or grant.secret_access_key is None:
        kwargs["skip_signature"] = True
    else:
        credentials: S3Credential = {
            "access_key_id": grant.access_key_id,
            "secret_access_key": grant.secret_access_key,
            "token": grant.session_token,
            "expires_at": grant.expires_at,
        }
        kwargs["credential_provider"] = lambda: credentials
    store = S3Store(
        grant.bucket,
        client_options=client_options,
        virtual_hosted_style_request=False,
        # Signing a body hash costs a SHA-256 pass over every shard; TLS already protects it.
        unsigned_payload=True,
        **kwargs,
    )
    with _shared_lock:
        store = _shared_s3.setdefault(cache_key, store)
        _shared_s3.move_to_end(cache_key)
        while len(_shared_s3) > SHARED_S3_STORES:
            _shared_s3.popitem(last=False)
    return store


class StoreStats:
    """Bytes and requests that went through one `GrantedStore` (thread-safe counters)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.bytes_written = 0
        self.gets = 0
        self.puts = 0
        self.grant_refreshes = 0

    def _add(
        self, *, read: int = 0, written: int = 0, gets: int = 0, puts: int = 0, refreshes: int = 0
    ) -> None:
        with self._lock:
            self.bytes_read += read
            self.bytes_written += written
            self.gets += gets
            self.puts += puts
            self.grant_refreshes += refreshes

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
                "gets": self.gets,
                "puts": self.puts,
                "grant_refreshes": self.grant_refreshes,
            }


class GrantedStore:
    """The objects under one grant's prefix; the obstore store is built lazily on first use.

    Keys are relative to the grant's prefix (``"zarr.json"``, ``"0/c.0.0.0"``). The grant is refreshed
    through the provider shortly before it expires: every request first checks the grant in hand, so it
    starts with at least the refresh margin left. S3 clients are shared between stores that hold the
    same credentials (see `_shared_s3_store`). A provider that fails (grant revoked, server gone)
    turns into `mikro.GrantError`; other store failures into `mikro.StorageError`.
    """

    def __init__(self, provider: GrantProvider, *, grant: StorageGrant | None = None) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._grant = grant
        self._grant_lifetime = self._lifetime(grant) if grant is not None else None
        self._store: LocalStore | None = None
        # The grant's prefix inside a shared, bucket-rooted S3 store (empty for a folder store).
        self._root = ""
        self._provider_error: BaseException | None = None
        self.stats = StoreStats()

    # -- pickling (dask.distributed ships stores to worker processes) --------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        # The provider must pickle (the session's does); locks, the obstore client and the counters are
        # made anew in the receiving process, where copies of one store become one (`_rebuilt_store`).
        with self._lock:
            grant = self._grant
        return (_rebuilt_store, (self._provider, grant))

    def __copy__(self) -> GrantedStore:
        # A handle on remote objects and a grant: copies would only mean more grant requests.
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> GrantedStore:
        return self

    def _offer(self, grant: StorageGrant | None) -> None:
        """Use ``grant`` from now on if it outlives the grant in hand."""
        if grant is None:
            return
        with self._lock:
            if self._grant is None or grant.expires_at > self._grant.expires_at:
                self._grant = grant
                self._grant_lifetime = self._lifetime(grant)

    # -- grants -------------------------------------------------------------------------------------

    @staticmethod
    def _lifetime(grant: StorageGrant) -> float:
        return max(grant.seconds_left(), 0.0)

    def _margin(self) -> float:
        lifetime = self._grant_lifetime or REFRESH_MARGIN_SECONDS * 4
        return min(REFRESH_MARGIN_SECONDS, lifetime / 4)

    def _fetch_grant(self) -> StorageGrant:
        try:
            grant = self._provider()
        except GrantError as exc:
            self._provider_error = exc
            raise
        except Exception as exc:
            self._provider_error = exc
            raise GrantError(f"could not obtain a storage grant: {exc}") from exc
        self._provider_error = None
        self._grant_lifetime = self._lifetime(grant)
        self.stats._add(refreshes=1)
        return grant

    def current_grant(self) -> StorageGrant:
        """The grant in use, refreshed through the provider if it is about to expire (blocking)."""
        with self._lock:
            if self._grant is None or self._grant.seconds_left() < self._margin():
                self._grant = self._fetch_grant()
            return self._grant

    def _obstore(self) -> LocalStore | S3Store:
        # Called before every request: the grant in hand always has the refresh margin left, so the
        # shared S3 client's fixed credentials outlive the request.
        grant = self.current_grant()
        if grant.kind == "s3":
            self._root = grant.prefix.strip("/")
            return _shared_s3_store(grant)
        with self._lock:
            if self._store is None:
                self._store = self._build(grant)
            return self._store

    def _path(self, key: str) -> str:
        """Where ``key`` (relative to the grant's prefix) is inside the store that `_call` hands out."""
        return f"{self._root}/{key}" if self._root else key

    def _build(self, grant: StorageGrant) -> LocalStore:
        if grant.kind == "file":
            return LocalStore(prefix=grant.path, mkdir=grant.write)
        raise StorageError(f"unknown store kind {grant.kind!r} in grant for store {grant.store_id}")

    # -- I/O ----------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[S], T], folder: S | None = None) -> T:
        """``fn(store)`` with its errors mapped; ``folder``: a folder grant's path given in its place."""
        # _obstore() and current_grant() refresh the grant when due: a folder store has no credentials
        # to refresh but still honours expiry and revocation of its grant this way.
        store = folder if folder is not None else cast("S", self._obstore())
        try:
            return fn(store)
        except (UnauthenticatedError, PermissionDeniedError, PermissionError) as exc:
            if isinstance(exc, PermissionError) and not isinstance(store, S3Store):
                raise StorageError(f"{what} failed: {exc}") from exc
            if self._provider_error is not None:
                raise GrantError(
                    f"{what}: the storage grant could not be refreshed: {self._provider_error}"
                ) from self._provider_error
            raise GrantError(
                f"{what}: the store refused the grant's credentials ({type(exc).__name__})"
            ) from exc
        except (BaseError, OSError) as exc:
            if self._provider_error is not None:
                raise GrantError(
                    f"{what}: the storage grant could not be refreshed: {self._provider_error}"
                ) from self._provider_error
            raise StorageError(f"{what} failed: {exc}") from exc

    def put(self, key: str, data: bytes | memoryview | ShardPayload) -> None:
        self.put_many([(key, data)])

    def put_many(self, objects: Sequence[tuple[str, bytes | memoryview | ShardPayload]]) -> None:
        """Put several objects, one after the other, in this thread; each appears whole or not at all."""
        self._put(objects, new=False)

    def put_new(self, objects: Sequence[tuple[str, bytes | memoryview | ShardPayload]]) -> None:
        """Put the objects of an image that nothing reads yet, one after the other, in this thread.

        Nothing reads an image's store before the server records it, after its objects are written; so
        to a folder store each file is written in place, not staged beside it and renamed over it (a
        rename, a getpid and two path operations fewer per object), and their folders are made before
        the first file rather than after an open that fails. A failure can leave an object partly written: the
        caller deletes the keys it asked for, as it must the objects written before the failing one
        anyway. On S3 a PUT is atomic either way (`put_many`).
        """
        self._put(objects, new=True)

    def _put(self, objects: Sequence[tuple[str, bytes | memoryview | ShardPayload]], *, new: bool) -> None:
        what = f"writing {objects[0][0]!r}" if len(objects) == 1 else "writing objects"
        grant = self.current_grant()
        if grant.kind == "file":
            # Straight to files, without obstore: its sync put hands every object to its runtime's
            # blocking pool and back (futex round trips), and building a `LocalStore` resolves the whole
            # path; for a small image both cost more CPU than its bytes.
            # The folder as the grant's str: a Path per call, and its fspath per object, were measurable
            # per small image.
            def write(root: str) -> None:
                if not new:
                    for key, data in objects:
                        _write_file(root, key, data)
                    return
                for folder in {key.rpartition("/")[0] for key, _ in objects} - {""}:
                    make_folder(os.path.join(root, folder))
                for key, data in objects:
                    _write_new_file(os.path.join(root, key), data)

            self._call(what, write, folder=grant.path)
        else:

            def put(store: LocalStore | S3Store) -> None:
                for key, data in objects:
                    body = data.materialize() if isinstance(data, RawShard | EncodedShard) else data
                    obstore.put(store, self._path(key), body, use_multipart=False)

            self._call(what, put)
        self.stats._add(written=sum(len(data) for _, data in objects), puts=len(objects))

    def _read(self, key: str, fetch: Callable[[LocalStore | S3Store, str], R], missing_ok: bool) -> R | None:
        """One GET of ``key`` through ``fetch(store, path)``, counted; None if missing and ``missing_ok``."""

        def run(store: LocalStore | S3Store) -> R | None:
            try:
                return fetch(store, self._path(key))
            except _MISSING:
                if missing_ok:
                    return None
                raise

        data = self._call(f"reading {key!r}", run)
        self.stats._add(read=memoryview(data).nbytes if data is not None else 0, gets=1)  # type: ignore[arg-type]
        return data

    def get(self, key: str, *, missing_ok: bool = False) -> bytes | None:
        """The whole object, or None if it does not exist and ``missing_ok``."""
        return self._read(key, lambda store, path: bytes(obstore.get(store, path).bytes()), missing_ok)

    def get_range(self, key: str, start: int, end: int, *, missing_ok: bool = False) -> Buffer | None:
        """Bytes ``[start, end)`` of one object (a buffer, not copied into ``bytes``)."""
        return self._read(
            key, lambda store, path: obstore.get_range(store, path, start=start, end=end), missing_ok
        )

    def get_suffix(self, key: str, length: int, *, missing_ok: bool = False) -> bytes | None:
        """The last ``length`` bytes of one object (a shard index lives there)."""

        def fetch(store: LocalStore | S3Store, path: str) -> bytes:
            return bytes(obstore.get(store, path, options={"range": {"suffix": length}}).bytes())

        return self._read(key, fetch, missing_ok)

    def delete(self, keys: list[str]) -> None:
        def run(store: LocalStore | S3Store) -> None:
            for key in keys:
                with contextlib.suppress(*_MISSING):
                    obstore.delete(store, self._path(key))

        self._call("deleting objects", run)

    def list_keys(self) -> list[str]:
        def run(store: LocalStore | S3Store) -> list[str]:
            if not self._root:
                return [meta["path"] for batch in obstore.list(store) for meta in batch]
            root = self._root + "/"
            listed = obstore.list(store, prefix=root)
            return [meta["path"][len(root) :] for batch in listed for meta in batch]

        return self._call("listing objects", run)

    def seconds_left(self) -> float | None:
        """Seconds until the grant in hand expires (None before the first use)."""
        with self._lock:
            return self._grant.seconds_left(dt.datetime.now(dt.UTC)) if self._grant else None

    # -- whole-shard and multi-range reads (mikro.datalayer._fetch) ---------------------------------

    def get_buffer(self, key: str, *, missing_ok: bool = False) -> Buffer | None:
        """The whole object as obstore's buffer (zero-copy: no ``bytes`` copy of a large shard)."""
        return self._read(key, lambda store, path: obstore.get(store, path).bytes(), missing_ok)

    def get_ranges(self, key: str, starts: list[int], ends: list[int]) -> list[Buffer]:
        """Bytes ``[starts[i], ends[i])`` of one object, one buffer per range, fetched concurrently.

        The caller merges neighbouring ranges; obstore then only joins ranges that touch, so every range
        is one request and ``stats`` counts exactly the bytes that crossed the wire.
        """

        def run(store: LocalStore | S3Store) -> list[Buffer]:
            return list(obstore.get_ranges(store, self._path(key), starts=starts, ends=ends, coalesce=0))

        buffers = self._call(f"reading {key!r}", run)
        self.stats._add(read=sum(memoryview(b).nbytes for b in buffers), gets=len(buffers))
        return buffers

    def get_pieces(
        self, key: str, sink: Callable[[bytes], None], *, piece_bytes: int, missing_ok: bool = False
    ) -> bool:
        """Stream the whole object to ``sink`` in pieces of about ``piece_bytes``; False if it is missing.

        No buffer of the whole object is ever built: a large shard becomes a few MiB of short-lived
        pieces (reused heap memory) instead of one fresh allocation that must be page-faulted in.
        """

        def run(store: LocalStore | S3Store) -> bool:
            try:
                result = obstore.get(store, self._path(key))
            except _MISSING:
                if missing_ok:
                    return False
                raise
            for piece in result.stream(min_chunk_size=piece_bytes):
                self.stats._add(read=len(piece))
                sink(piece)
            return True

        found = self._call(f"reading {key!r}", run)
        self.stats._add(gets=1)
        return found

    # -- a folder store's objects as files (mikro.datalayer._file_reads) ------------------------------

    def reads_files(self) -> bool:
        """Whether this is a folder store whose objects `read_file` opens directly (blocking: it may
        fetch the grant)."""
        return FILE_READS and self.current_grant().kind == "file"

    def read_file(self, key: str, use: Callable[[LocalFile], R], *, missing_ok: bool = False) -> R | None:
        """Open a folder store's object ``key`` as a file and return ``use(file)``; None if the object is
        missing and ``missing_ok``. Counted as one GET of the bytes ``use`` read."""

        def run(_store: LocalStore | S3Store) -> tuple[R | None, int]:
            try:
                file = LocalFile(os.path.join(self.current_grant().path, key))
            except FileNotFoundError:
                if missing_ok:
                    return None, 0
                raise
            try:
                return use(file), file.nbytes_read
            finally:
                file.close()

        result, nbytes = self._call(f"reading {key!r}", run)
        self.stats._add(read=nbytes, gets=1)
        return result

    # -- whole files, streamed (mikro.datalayer._files) ----------------------------------------------

    def copy_file_in(
        self,
        key: str,
        source: str,
        *,
        hasher: Hasher | None = None,
        checkpoint: Callable[[], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int | None:
        """For a folder store, copy the file ``source`` to ``key`` in the kernel (see `_local_copy`);
        returns its size, or None for other stores (write them with `write_pieces`)."""
        grant = self.current_grant()
        if grant.kind != "file":
            return None

        # The folder given to `_call`: a `LocalStore` built for a copy it does not use resolved the whole
        # path and made its folder, holding the GIL, a third of a small original's copy.
        def run(root: str) -> int:
            return copy_file(
                source, os.path.join(root, key), hasher=hasher, checkpoint=checkpoint, progress=progress
            )

        size = self._call(f"writing {key!r}", run, folder=grant.path)
        self.stats._add(written=size, puts=1)
        return size

    def write_pieces(
        self, key: str, pieces: Iterable[Buffer], *, part_bytes: int, parts_in_flight: int
    ) -> int:
        """Write one object from ``pieces`` as they come; returns its size.

        Up to ``part_bytes`` are buffered; a larger object goes up as a multipart upload with at most
        ``parts_in_flight`` parts in flight, so memory stays bounded whatever its size. An exception
        from ``pieces`` (a cancellation) aborts the upload: nothing, not even a hidden part, is left.
        """

        def run(store: LocalStore | S3Store) -> int:
            size = 0
            with obstore.open_writer(
                store, self._path(key), buffer_size=part_bytes, max_concurrency=parts_in_flight
            ) as writer:
                for piece in pieces:
                    size += writer.write(piece)
            return size

        size = self._call(f"writing {key!r}", run)
        self.stats._add(written=size, puts=1)
        return size

    def stream(self, key: str, *, piece_bytes: int) -> Iterator[Buffer]:
        """The object's bytes in pieces of about ``piece_bytes``, each fetched as the caller asks for it."""
        what = f"reading {key!r}"
        result = self._call(what, lambda store: obstore.get(store, self._path(key)))
        pieces = iter(result.stream(min_chunk_size=piece_bytes))
        self.stats._add(gets=1)
        while (piece := self._call(what, lambda _store: next(pieces, None))) is not None:
            self.stats._add(read=len(piece))
            yield piece


#: A new object's file: created, or emptied if a failed attempt left one (a put replaces an object).
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)


def _write_file(root: str, key: str, data: bytes | memoryview | ShardPayload) -> None:
    """Write ``data`` to ``root/key`` the way obstore's `LocalStore` puts an object (see `staged`)."""
    with staged(os.path.join(root, key), make_folders=True) as (fd, _):
        _write_body(fd, data)


def _write_new_file(path: str, data: bytes | memoryview | ShardPayload) -> None:
    """Write ``data`` to the file ``path`` in place, its folder made already (see `GrantedStore.put_new`)."""
    fd = os.open(path, _NEW_FILE_FLAGS, 0o666)
    try:
        _write_body(fd, data)
    finally:
        os.close(fd)


def _write_body(fd: int, data: bytes | memoryview | ShardPayload) -> None:
    """A `RawShard` goes chunk by chunk from the pixels: the shard never exists whole in memory (no fresh
    shard-sized buffer to fault in: on the ingest path that cost more client CPU than the write); an
    `EncodedShard` as its parts. A small shard's parts go in one ``writev`` (`write_parts`)."""
    if isinstance(data, EncodedShard):
        write_parts(fd, data.parts)
    elif isinstance(data, RawShard):
        parts = data.parts()
        if parts is not None:
            write_parts(fd, parts)
        else:
            data.write_to(partial(write_all, fd))
    else:
        write_all(fd, data)
