"""The session's files: ``upload_file``, ``download_file``, ``open_file`` (bytes kept as they are).

:class:`FilesMixin` is mixed into :class:`mikro.Mikro`. The bytes move in worker threads through
:mod:`mikro.datalayer._files` (obstore's sync API, multipart, hashed on the way, never whole in memory);
the record (``createFile``) is made only once they are all in place, so no half-uploaded file is ever
visible. A failed or cancelled upload leaves neither record nor objects behind.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, cast

import anyio
import anyio.from_thread
import anyio.lowlevel

from mikro._exceptions import GrantError, GraphQLError, MikroError, NotFoundError, ValidationError
from mikro.api._operations import WireInput, wire_input
from mikro.client._registrations import Registrations
from mikro.datalayer import (
    FILE_KEY,
    FileSource,
    FileWritten,
    GrantedStore,
    download_file,
    source_size,
    upload_file,
    verified_pieces,
)

if TYPE_CHECKING:
    from mikro.api import File, Grant
    from mikro.api._operations import IdLike

__all__ = ["FileReader", "FilesMixin"]

log = logging.getLogger(__name__)

#: How long cleanup after a failed upload may take (it runs shielded from cancellation).
CLEANUP_SECONDS = 10.0
#: Files recorded per ``createFiles`` request (the server accepts up to 64).
FILES_PER_REQUEST = 64

Progress = Callable[[int, int], None]


class _Session(Protocol):
    """What the files use of the session (implemented by :class:`mikro.Mikro`)."""

    @property
    def thread_limiter(self) -> anyio.CapacityLimiter: ...

    @property
    def reservations(self) -> Any: ...

    def _small_writes_limiter(self, grant: Grant) -> anyio.CapacityLimiter: ...

    async def _new_store(self, kind: str) -> tuple[GrantedStore, str]: ...
    def _granted(self, grant: Grant) -> tuple[GrantedStore, str]: ...

    async def _give_back(self, store: GrantedStore, store_id: str, written: list[str]) -> None: ...

    def _reader_store(self, store_id: str) -> GrantedStore: ...

    @property
    def file_registrations(self) -> Registrations: ...

    async def get_file(self, id: Any) -> File: ...

    async def _create_file_rows(self, inputs: Sequence[Mapping[str, Any]]) -> list[File]: ...
    async def _create_file_records(self, inputs: Sequence[Mapping[str, Any]]) -> list[str]: ...

    async def list_files(self, **filters: Any) -> list[File]: ...

    async def delete_file(self, file: Any) -> str: ...


def _on_loop(progress: Progress | None) -> Progress | None:
    """``progress`` called on the event loop from the worker thread (as the image upload calls it)."""
    if progress is None:
        return None
    return lambda done, total: anyio.from_thread.run_sync(progress, done, total)


def _guessed_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _default_name(source: FileSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, bytes | bytearray | memoryview):
        raise ValidationError("upload_file(bytes) needs a name= (there is no file name to take it from)")
    return Path(source).name


def _record(
    store_id: str, name: str, written: FileWritten, media_type: str, links: Mapping[str, Any]
) -> dict[str, Any]:
    """The createFile(s) input that records an uploaded file."""
    return {
        "store": store_id,
        "name": name,
        "size": written.size,
        "content_hash": written.content_hash,
        "media_type": media_type,
        **links,
    }


def _target(path: str | os.PathLike[str], name: str) -> Path:
    """Where a download goes: ``path``, or the file's own name inside ``path`` when it is a folder
    (only its last component: a stored name never reaches outside the folder)."""
    target = Path(path)
    return target / Path(name).name if target.is_dir() else target


class FilesMixin:
    """Methods of :class:`mikro.Mikro` that move files."""

    def _fs(self) -> _Session:
        return cast("_Session", self)

    async def _as_file(self, file: File | IdLike) -> File:
        from mikro.api import File

        return file if isinstance(file, File) else await self._fs().get_file(file)

    async def upload_file(
        self,
        path_or_bytes: FileSource,
        *,
        name: str | None = None,
        media_type: str | None = None,
        representations: Iterable[IdLike] = (),
        samples: Iterable[IdLike] = (),
        experiments: Iterable[IdLike] = (),
        datasets: Iterable[IdLike] = (),
        tags: Iterable[str] = (),
        progress: Progress | None = None,
    ) -> File:
        """Store a file as it is (an original, a PDF, a CSV, a protocol) and create its ``File``.

        ``path_or_bytes`` is a path (streamed from disk, never read whole into memory) or bytes. ``name``
        defaults to the path's file name; ``media_type`` is guessed from the name (``mimetypes``), else
        ``application/octet-stream``. Large files go up as a multipart upload through the session's
        write grant, their SHA-256 computed on the way (``file.content_hash``). The links and tags are
        set with the record. ``progress(done, total)`` gets the bytes sent so far.

        Nothing is visible on the server until all the bytes are in place: a failure or cancellation at
        any step leaves no ``File`` and no objects behind.
        """
        links = {
            "representations": list(representations),
            "samples": list(samples),
            "experiments": list(experiments),
            "datasets": list(datasets),
            "tags": list(tags),
        }
        return await self._store_file(path_or_bytes, name, media_type, links, progress)

    async def _store_file(
        self,
        path_or_bytes: FileSource,
        name: str | None,
        media_type: str | None,
        links: Mapping[str, Any],
        progress: Progress | None = None,
        content_hash: str | None = None,
    ) -> File:
        """`upload_file`'s work; a known ``content_hash`` (``blake3:...``, an ingest's fingerprint) is
        taken as it is instead of hashing the bytes again."""
        name = _default_name(path_or_bytes, name)
        session = self._fs()

        def check(given: str | None) -> str:
            # A path that is no file is refused before a store is reserved for it; mimetypes reads the
            # system's type maps on first use: both off the loop.
            source_size(path_or_bytes)
            return given or _guessed_type(name)

        media_type = await anyio.to_thread.run_sync(check, media_type, limiter=session.thread_limiter)
        with session.reservations.uploading("MEDIA"):
            store, store_id = await session._new_store("MEDIA")
            created: File | None = None
            creating = False
            stored_hash: str | None = None
            try:
                written = await anyio.to_thread.run_sync(
                    partial(
                        upload_file,
                        store,
                        path_or_bytes,
                        checkpoint=anyio.from_thread.check_cancelled,
                        progress=_on_loop(progress),
                        content_hash=content_hash,
                    ),
                    limiter=session.thread_limiter,
                )
                stored_hash = written.content_hash
                creating = True
                # Shielded: a cancellation arriving mid-request must not leave us unsure whether the
                # server recorded the file (it takes effect at the checkpoint below, which removes it).
                # Concurrent uploads share one createFiles request (see _registrations).
                with anyio.CancelScope(shield=True):
                    created = await self._register_file(_record(store_id, name, written, media_type, links))
                await anyio.lowlevel.checkpoint()
            except BaseException:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                    await self._undo_upload(store, store_id, created, stored_hash, maybe_created=creating)
                raise
            assert created is not None
            return created

    async def _store_files(
        self, sources: Sequence[tuple[Path, str]], links: Mapping[str, Any]
    ) -> list[str | None]:
        """`_store_file` of many small files at once (an ingest's originals), each ``(path, its known
        content hash)``: stores taken from the reservations, the bytes put in one worker-thread call, the
        records made together (one ``createFiles`` request answering only their ids). Per file the id
        of its ``File``, or None where it failed (nothing of it left: its caller stores it alone, which
        reports why); a cancellation leaves nothing of any of them."""
        if not sources:
            return []
        session = self._fs()
        count = len(sources)
        # The reserved stores: their grants taken on the loop, the stores made of them in the worker
        # thread that writes them (for a small file, making one cost the loop more than recording it).
        grants: list[Grant] = []
        stores: list[GrantedStore | None] = [None] * count
        created: list[str | None] = [None] * count
        hashes: list[str | None] = [None] * count
        creating = [False] * count

        def put_all() -> list[tuple[str, WireInput] | None]:
            # Per file its content hash and its record, made here in GraphQL form (see `wire_input`).
            out: list[tuple[str, WireInput] | None] = []
            for i, (path, content_hash) in enumerate(sources):
                try:
                    store = stores[i] = session._granted(grants[i])[0]
                    written = upload_file(
                        store, path, checkpoint=anyio.from_thread.check_cancelled, content_hash=content_hash
                    )
                    media_type = _guessed_type(path.name)
                    record = _record(grants[i].store_id, path.name, written, media_type, links)
                    out.append((written.content_hash, wire_input(record)))
                except Exception as exc:
                    log.debug("original %s not uploaded with its group: %s", path, exc)
                    out.append(None)
            return out

        async def record(i: int, input: WireInput) -> None:
            creating[i] = True
            try:
                with anyio.CancelScope(shield=True):
                    file = await self._register_file(input)
                created[i] = file.id
            except Exception as exc:
                log.debug("original %s not recorded with its group: %s", sources[i][0], exc)

        async def record_all(done: list[tuple[int, WireInput]]) -> None:
            # One createFiles request for the group (the session's queue would send the first file
            # alone, the others once it is answered); refused, each file on its own gets its answer.
            for i, _ in done:
                creating[i] = True
            try:
                with anyio.CancelScope(shield=True):
                    files = await session._create_file_records([input for _, input in done])
            except GraphQLError as exc:
                log.debug("a group's originals not recorded together: %s", exc)
                async with anyio.create_task_group() as tg:
                    for i, input in done:
                        tg.start_soon(record, i, input)
                return
            except Exception as exc:
                log.debug("a group's originals not recorded: %s", exc)
                return
            for (i, _), file in zip(done, files, strict=True):
                created[i] = file

        with session.reservations.uploading("MEDIA", count):
            try:
                grants = await session.reservations.take_many("MEDIA", count)
                writes = session._small_writes_limiter(grants[0])
                put = await anyio.to_thread.run_sync(put_all, limiter=writes)
                for i, done in enumerate(put):
                    hashes[i] = None if done is None else done[0]
                uploaded = [(i, done[1]) for i, done in enumerate(put) if done is not None]
                async with anyio.create_task_group() as tg:
                    for start in range(0, len(uploaded), FILES_PER_REQUEST):
                        tg.start_soon(record_all, uploaded[start : start + FILES_PER_REQUEST])
                await anyio.lowlevel.checkpoint()
                failed = [i for i in range(len(grants)) if created[i] is None]
            except BaseException:
                failed = list(range(len(grants)))
                raise
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                    for i in failed:
                        store = stores[i] or session._granted(grants[i])[0]
                        await self._undo_upload(
                            store, grants[i].store_id, created[i], hashes[i], maybe_created=creating[i]
                        )
        return created

    async def _register_file(self, input: Mapping[str, Any]) -> File:
        # The session's Registrations queue is typed for images; it batches any row the same way.
        return cast("File", await self._fs().file_registrations.register(input))

    async def _undo_upload(
        self,
        store: GrantedStore,
        store_id: str,
        created: File | str | None,
        content_hash: str | None,
        *,
        maybe_created: bool,
    ) -> None:
        """Remove what a failed upload left: its record (deleting it deletes the bytes), else its bytes
        and its reserved store."""
        session = self._fs()
        try:
            if created is None and maybe_created and content_hash is not None:
                # The server may have recorded the file although its answer never arrived.
                found = await session.list_files(content_hash=content_hash, limit=1000)
                created = next((f for f in found if f.store.id == store_id), None)
            if created is not None:
                await session.delete_file(created)
                return
        except Exception as exc:
            log.warning("could not remove the file record of failed upload %s: %s", store_id, exc)
            return
        await session._give_back(store, store_id, [FILE_KEY])

    async def download_file(
        self,
        file: File | IdLike,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Write the file's bytes to ``path`` (or into ``path`` under the file's name when it is a folder);
        returns where.

        Streamed to a temporary file beside the target and renamed into place only once its size and
        SHA-256 match the record (else :class:`mikro.StorageError`), so ``path`` never holds a partial
        or corrupt file. ``progress(done, total)`` gets the bytes received so far.
        """
        found = await self._as_file(file)
        session = self._fs()
        store = session._reader_store(found.store.id)

        def run() -> Path:
            return download_file(
                store,
                _target(path, found.name),
                size=found.size,
                content_hash=found.content_hash,
                checkpoint=anyio.from_thread.check_cancelled,
                progress=_on_loop(progress),
            )

        with _not_found_when_hidden(found):
            return await anyio.to_thread.run_sync(run, limiter=session.thread_limiter)

    def open_file(self, file: File | IdLike) -> FileReader:
        """The file's bytes as a stream of chunks.

        ``async with m.open_file(file) as chunks:`` then ``async for chunk in chunks:``.

        Each chunk (a few MiB of ``bytes``) is fetched when asked for, in a worker thread; after the last
        one the content is checked against the record's size and SHA-256 (:class:`mikro.StorageError`
        if it differs).
        """
        return FileReader(self, file)


@contextmanager
def _not_found_when_hidden(file: File) -> Iterator[None]:
    """A grant refused as NOT_FOUND means the file is not this user's to see (a model of another user's
    file, or one deleted since): say so as every other call on it does, not as a storage failure."""
    try:
        yield
    except GrantError as exc:
        if isinstance(exc.__cause__, NotFoundError):
            raise NotFoundError(f"no file with id {file.id}", code=exc.__cause__.code) from exc
        raise


class FileReader:
    """A stored file's bytes, chunk by chunk (see :meth:`FilesMixin.open_file`)."""

    def __init__(self, session: FilesMixin, file: File | IdLike) -> None:
        self._session = session
        self._file = file
        self._pieces: Iterator[bytes] | None = None
        self.file: File | None = None

    async def __aenter__(self) -> Self:
        session = self._session
        self.file = found = await session._as_file(self._file)
        store = session._fs()._reader_store(found.store.id)
        pieces = verified_pieces(store, size=found.size, content_hash=found.content_hash)
        self._pieces = (bytes(piece) for piece in pieces)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pieces, self._pieces = self._pieces, None
        if pieces is not None and hasattr(pieces, "close"):
            # Closing drops the GET's connection; in a thread, as every store call.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pieces.close)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._pieces is None:
            raise MikroError("read a file inside `async with m.open_file(file) as chunks:`")
        limiter = self._session._fs().thread_limiter
        assert self.file is not None
        with _not_found_when_hidden(self.file):
            piece = await anyio.to_thread.run_sync(next, self._pieces, None, limiter=limiter)
        if piece is None:
            raise StopAsyncIteration
        return piece
