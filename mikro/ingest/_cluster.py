"""``m.ingest(..., cluster=client)``: each file read, encoded and uploaded on a dask.distributed worker.

The session, on its event loop, walks the sources and asks the server which are stored, as the local path
does; the content hashes are computed on the workers (they read the files anyway, and a client hashing
every byte would be the ceiling the cluster is there to lift). For each file to ingest the session then
reserves upload stores (write grants: scoped credentials and store config) and submits one task,
:func:`ingest_file`: a module-level function of plain, picklable arguments. The worker opens the file
with bioio, writes each scene's OME-Zarr objects (and the original, if kept) with obstore's sync API
through mikro's own write path, and returns plain data: each scene's registration (array metadata,
metadata read from the file, thumbnail), or the file's one-line error. The session registers the images
of finished files in batches (the session's `Registrations` group commit), so the report is the local
path's. A grant that runs out during a long file is renewed by the worker itself: a pickled store carries
the session's token (see `mikro.client._grant_refresh`), so only use a cluster you would give it to.

A file needs one store per scene, and its scene count is known only once it is opened: the first task
writes as many scenes as it was given stores for (one), and says how many the file has; the others go
in a second task with stores of their own.

The futures are awaited in worker threads (``Future.result``), so the loop never blocks and trio works as
well as asyncio. Cancelling the ingest cancels the outstanding futures and releases every store reserved
for an image not registered: the server deletes the store with its objects, and sweeps its prefix again
once its write credentials have expired (a worker's task cannot be interrupted and may write meanwhile).

obstore is not fork-safe, so the workers must be spawned (dask's default) or started by a forkserver,
never forked: a cluster whose worker processes were forked is refused (:func:`start_method`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import mimetypes
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from mikro._exceptions import MikroError
from mikro.client._image_request import image_request
from mikro.ingest._pipeline import (
    SHARDS_PER_FILE,
    _error_text,
    _planned,
    _Progress,
    _stored_originals,
    ensure_unchanged,
    scene_image,
)
from mikro.ingest._readers import ReaderError, Source, open_source
from mikro.ingest._report import FileReport, PlannedImage
from mikro.ingest._sources import Fingerprint

if TYPE_CHECKING:
    from mikro.client._mikro import Mikro
    from mikro.datalayer import FileWritten, GrantedStore

__all__ = ["ClusterIngest", "FileJob", "FileOutcome", "ingest_file", "start_method"]

log = logging.getLogger(__name__)

#: How ``dask.config.get("scheduler")`` names a distributed scheduler (``Client`` sets the first).
DISTRIBUTED_SCHEDULERS = ("dask.distributed", "distributed")
#: Files in flight per worker thread of the cluster: one waiting to start while another runs.
FILES_PER_WORKER_THREAD = 2
#: How long giving back the stores of a failed or cancelled file may take (shielded from cancellation).
CLEANUP_SECONDS = 10.0

Store = tuple["GrantedStore", str]


# -- on the worker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileJob:
    """One task: which scenes of which file go to which reserved stores."""

    path: str
    digest: str
    #: The file's stat signature when it was hashed: a file that changes meanwhile is not stored.
    signature: tuple[int, int, int]
    #: Scenes to write, in order; None: the scenes not in ``present``, as many as there are ``stores``.
    scenes: tuple[int, ...] | None
    present: frozenset[int]
    stores: tuple[Store, ...]
    #: The MEDIA store to keep the file itself in (``keep_original``), or None.
    original: Store | None = None
    dry_run: bool = False
    #: ``create_representation``'s ``compression`` and ``pyramid``, as the session was asked.
    encoding: dict[str, Any] = field(default_factory=dict)


@dataclass
class SceneWritten:
    scene: int
    store_id: str
    #: The ``RepresentationInput`` recording it, but for what the session adds (dataset, sample, tags...).
    registration: dict[str, Any]


@dataclass
class FileOutcome:
    """What a task did: plain data, or the file's one-line error (nothing of it is to be registered)."""

    scene_count: int = 0
    written: list[SceneWritten] = field(default_factory=list)
    planned: list[PlannedImage] = field(default_factory=list)
    original: FileWritten | None = None
    media_type: str | None = None
    error: str | None = None


def ingest_file(job: FileJob) -> FileOutcome:
    """Read, encode and store the scenes (and the original) of one file: the task a worker runs.

    It runs in a fresh context: the worker's own context variables would send the dask reads of a large
    file to the cluster's scheduler (a task waiting on tasks), rather than to this process's threads.
    """
    return contextvars.Context().run(_ingest_file, job)


def _ingest_file(job: FileJob) -> FileOutcome:
    out = FileOutcome()
    path = Path(job.path)
    source: Source | None = None
    try:
        source = open_source(path)
        out.scene_count = count = source.scene_count
        wanted = job.scenes if job.scenes is not None else [i for i in range(count) if i not in job.present]
        if job.dry_run:
            out.planned = [_planned(source.scene(i)) for i in wanted]
        else:
            if job.original is not None and source.is_file:
                out.original, out.media_type = _keep_original(path, job)
            for index, (store, store_id) in zip(wanted, job.stores, strict=False):
                out.written.append(_write_scene(source, index, count, path, job, store, store_id))
        ensure_unchanged(path, job.signature)
    except Exception as exc:
        # The session releases this file's stores, and the server deletes what was written to them.
        out = FileOutcome(scene_count=out.scene_count, error=_error_text(exc))
    finally:
        if source is not None:
            source.close()
    return out


def _keep_original(path: Path, job: FileJob) -> tuple[FileWritten, str]:
    from mikro.datalayer import upload_file

    assert job.original is not None
    written = upload_file(job.original[0], path)
    if written.content_hash != job.digest:
        raise ReaderError("the file changed while it was being ingested: not stored")
    media_type = mimetypes.guess_type(path.name, strict=False)[0] or "application/octet-stream"
    return written, media_type


def _write_scene(
    source: Source, index: int, count: int, path: Path, job: FileJob, store: GrantedStore, store_id: str
) -> SceneWritten:
    request = image_request(**scene_image(source.scene(index), path, job.digest, count), **job.encoding)

    async def write() -> Any:
        return await request.write(store, anyio.CapacityLimiter(SHARDS_PER_FILE))

    # mikro's write path is async (shards encoded and put in threads, several at once): a loop of its own
    # in this task's thread. asyncio: nothing here needs trio, and the worker has no loop for tasks.
    result = anyio.run(write)
    return SceneWritten(index, store_id, request.registration(store_id, result))


def start_method() -> str:
    """How this process was started: ``"spawn"``, ``"forkserver"``, ``"fork"``, or ``"main"`` (not by
    multiprocessing: a ``dask worker`` command without a nanny, or the client's own process).

    A spawned child runs ``spawn_main`` and a forkserver's child inherits the forkserver's command line;
    a forked child inherits its parent's, which is neither.
    """
    if multiprocessing.parent_process() is None:
        return "main"
    command = " ".join(sys.orig_argv)
    if "multiprocessing.forkserver" in command:
        return "forkserver"
    if "spawn_main" in command:
        return "spawn"
    return "fork"


# -- in the session -----------------------------------------------------------------------------------


def _default_client() -> Any:
    """dask's default scheduler when it is a distributed ``Client``, else None."""
    try:
        import dask
        import distributed
    except ImportError:
        return None
    if dask.config.get("scheduler", None) not in DISTRIBUTED_SCHEDULERS:
        return None
    try:
        return distributed.default_client()  # type: ignore[no-untyped-call]
    except ValueError:
        return None


def _distributed_client(cluster: Any) -> Any:
    """The ``Client`` that ``cluster`` names (a Client, or ``"auto"``), or None for this process."""
    if isinstance(cluster, str) and cluster == "auto":
        return _default_client()
    try:
        from distributed import Client
    except ImportError as exc:
        raise MikroError(
            "ingest on a dask cluster needs dask.distributed: pip install 'mikro[cluster]'"
        ) from exc
    if not isinstance(cluster, Client):
        raise MikroError(f"cluster= takes a dask.distributed Client or 'auto', not {type(cluster).__name__}")
    return cluster


class ClusterIngest:
    """One ingest's use of a dask.distributed ``Client``; make it with :meth:`connect`."""

    def __init__(self, client: Any, threads: int) -> None:
        self.client = client
        self.window = max(1, threads * FILES_PER_WORKER_THREAD)
        # Each future is awaited in a thread of its own: as many as there are tasks in flight.
        self._waiters = anyio.CapacityLimiter(self.window + 1)

    @classmethod
    async def connect(cls, cluster: Any, limiter: anyio.CapacityLimiter) -> ClusterIngest | None:
        """The cluster to ingest on (None: this process), its workers checked: spawned, never forked."""
        client = _distributed_client(cluster)
        if client is None:
            return None
        if client.asynchronous:
            raise MikroError(
                "cluster= takes a synchronous dask.distributed Client (not asynchronous=True): its "
                "futures are awaited in worker threads, under trio as under asyncio"
            )

        def check() -> int:
            methods: dict[str, str] = client.run(start_method)
            forked = sorted(worker for worker, method in methods.items() if method == "fork")
            if forked:
                raise MikroError(
                    f"the dask workers {', '.join(forked)} were forked: obstore is not fork-safe. Start "
                    "them spawned (distributed.worker.multiprocessing-method: spawn, dask's default)"
                )
            if not methods:
                raise MikroError("the dask cluster has no workers")
            return sum(client.nthreads().values())

        try:
            threads = await anyio.to_thread.run_sync(check, limiter=limiter)
        except MikroError:
            raise
        except Exception as exc:
            raise MikroError(f"the dask cluster cannot be reached: {exc}") from exc
        return cls(client, threads)

    async def _result(self, futures: Sequence[Any]) -> list[Any]:
        """The futures' results, awaited in a worker thread; cancelled with the caller."""
        try:
            return await anyio.to_thread.run_sync(
                self.client.gather, list(futures), limiter=self._waiters, abandon_on_cancel=True
            )
        except BaseException as exc:
            # Outstanding work is dropped (a running task finishes, unheard); the waiting thread ends.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.client.cancel, list(futures))
            if isinstance(exc, Exception) and not isinstance(exc, MikroError):
                # A worker that died, a scheduler gone: the cluster's failure, not the file's.
                raise MikroError(f"the dask cluster failed: {type(exc).__name__}: {exc}") from exc
            raise

    async def fingerprints(
        self,
        paths: list[Path],
        hash_all: Callable[[Sequence[Path]], list[Fingerprint | BaseException]],
        batch: int,
    ) -> list[Fingerprint | BaseException]:
        """``hash_all`` of every path, ``batch`` paths a task, on the workers."""
        if not paths:
            return []
        batches = [paths[i : i + batch] for i in range(0, len(paths), batch)]
        futures = self.client.map(hash_all, batches, pure=False)
        return [r for found in await self._result(futures) for r in found]

    async def _run(self, job: FileJob) -> FileOutcome:
        future = self.client.submit(ingest_file, job, pure=False)
        (outcome,) = await self._result([future])
        assert isinstance(outcome, FileOutcome)
        return outcome

    async def ingest(
        self,
        m: Mikro,
        todo: Iterable[tuple[FileReport, Fingerprint, set[int]]],
        keep: dict[str, Any],
        progress: _Progress,
        concurrency: int,
        *,
        dry_run: bool,
        keep_original: bool,
        encoding: dict[str, Any],
    ) -> None:
        """Ingest the files of ``todo`` on the cluster, filling in their reports."""
        slots = anyio.Semaphore(max(concurrency, self.window))
        todo = list(todo)
        # The originals earlier runs kept, looked up for all the files at once as the local path does
        # (an interrupted run may leave some, a killed one even with no image of them).
        kept = await _stored_originals(m, [fp for _, fp, _ in todo]) if keep_original and not dry_run else {}

        async def run(report: FileReport, fp: Fingerprint, present: set[int]) -> None:
            async with slots:
                started = time.perf_counter()
                try:
                    await _File(self, m, report, fp, present, keep, encoding).ingest(
                        dry_run=dry_run, keep_original=keep_original, found=kept.get(fp.digest)
                    )
                finally:
                    report.seconds = time.perf_counter() - started
                progress.file_done(report)

        async with anyio.create_task_group() as tg:
            for item in todo:
                tg.start_soon(run, *item)


class _File:
    """One file's way through the cluster: its stores, its tasks, its registrations, or its undoing."""

    def __init__(
        self,
        cluster: ClusterIngest,
        m: Mikro,
        report: FileReport,
        fp: Fingerprint,
        present: set[int],
        keep: dict[str, Any],
        encoding: dict[str, Any],
    ) -> None:
        self.cluster, self.m, self.report, self.fp = cluster, m, report, fp
        self.present = frozenset(present)
        self.keep = keep
        self.encoding = encoding
        self.stores: list[Store] = []
        #: The id of the file's original (a `File`), once kept or found.
        self.original: str | None = None
        self.new_original = False
        self.registering = False

    async def _reserve(self, kind: str, count: int) -> list[Store]:
        reserved = []
        for _ in range(count):
            store = await self.m._new_store(kind)
            self.stores.append(store)
            reserved.append(store)
        return reserved

    async def _run(
        self, scenes: tuple[int, ...] | None, count: int, original: Store | None, dry_run: bool
    ) -> FileOutcome:
        job = FileJob(
            path=self.report.path,
            digest=self.fp.digest,
            signature=self.fp.signature,
            scenes=scenes,
            present=self.present,
            stores=tuple(await self._reserve("ZARR", count)),
            original=original,
            dry_run=dry_run,
            encoding=self.encoding,
        )
        outcome = await self.cluster._run(job)
        if outcome.error is not None:
            raise ReaderError(outcome.error)
        return outcome

    async def ingest(self, *, dry_run: bool, keep_original: bool, found: str | None) -> None:
        """``found``: the id of the file's original an earlier run kept (see `_stored_originals`), or
        None."""
        # Counted as uploads in progress for the whole file: the session reserves stores for as many at
        # once (see `UploadReservations`).
        with contextlib.ExitStack() as uploads:
            for kind in ("ZARR", "MEDIA") if keep_original and found is None else ("ZARR",):
                uploads.enter_context(self.m.reservations.uploading(kind))
            await self._ingest(dry_run=dry_run, keep_original=keep_original, found=found)

    async def _ingest(self, *, dry_run: bool, keep_original: bool, found: str | None) -> None:
        report = self.report
        try:
            original: Store | None = None
            if keep_original and not dry_run and await anyio.Path(report.path).is_file():
                if found is not None:
                    self.original = found
                else:
                    (original,) = await self._reserve("MEDIA", 1)
            first = await self._run(None, 0 if dry_run else 1, original, dry_run)
            done = {w.scene for w in first.written}
            rest = tuple(i for i in range(first.scene_count) if i not in self.present and i not in done)
            outcomes = [first]
            if rest and not dry_run:
                outcomes.append(await self._run(rest, len(rest), None, dry_run))
            report.skipped = len(self.present & set(range(first.scene_count)))
            if dry_run:
                report.status, report.planned = "planned", first.planned
                return
            # Shielded: the pixels are in place, and a request cut off mid-way would leave us unsure
            # whether the server recorded it. A cancellation takes effect once the file is recorded.
            with anyio.CancelScope(shield=True):
                if first.original is not None and original is not None:
                    self.original = await self._record_original(first, original[1])
                if self.original is not None:
                    report.original_file = self.original
                await self._register([w for o in outcomes for w in o.written])
            if not report.images:
                report.status = "skipped"
        except Exception as exc:
            report.status, report.error = "failed", _error_text(exc)
            await self._undo()
        except BaseException:
            await self._undo()
            raise

    async def _record_original(self, outcome: FileOutcome, store_id: str) -> str:
        assert outcome.original is not None
        created = await self.m._register_file(
            {
                "store": store_id,
                "name": Path(self.report.path).name,
                "size": outcome.original.size,
                "content_hash": outcome.original.content_hash,
                "media_type": outcome.media_type,
                "tags": self.keep["tags"],
            }
        )
        self.new_original = True
        self.stores = [s for s in self.stores if s[1] != store_id]
        return created.id

    async def _register(self, written: list[SceneWritten]) -> None:
        """Record the file's images, in the session's batches with the other files' (call it shielded:
        once queued, an image may be committed by whichever caller sends the batch)."""
        extra = {**self.keep, "original_file": self.original}
        registered: dict[int, str] = {}
        self.registering = True

        async def one(w: SceneWritten) -> None:
            rep = await self.m.registrations.register({**w.registration, **extra})
            registered[w.scene] = rep.id
            self.stores = [s for s in self.stores if s[1] != w.store_id]

        try:
            async with anyio.create_task_group() as tg:
                for w in written:
                    tg.start_soon(one, w)
        finally:
            self.report.images = [registered[w.scene] for w in written if w.scene in registered]

    async def _undo(self) -> None:
        """Delete what this file made: its images, its original (if new), its unregistered stores."""
        report = self.report
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
            for rep_id in [*report.images, *await self._unanswered()]:
                with contextlib.suppress(MikroError):
                    await self.m.delete_representation(rep_id)
            if self.new_original and self.original is not None:
                with contextlib.suppress(MikroError):
                    await self.m.delete_file(self.original)
            stores = [store_id for _, store_id in self.stores]
            if stores:
                try:
                    await self.m.release_uploads(stores)
                except MikroError as exc:
                    # Never finished: the server collects abandoned uploads with their objects.
                    log.warning("could not release %d stores of %s: %s", len(stores), report.path, exc)
        report.images, report.original_file = [], None

    async def _unanswered(self) -> list[str]:
        """Images the server may have recorded although their registration's answer never came."""
        if not (self.registering and self.m.registrations.may_leave_rows and self.stores):
            return []
        ours = {store_id for _, store_id in self.stores}
        try:
            found = await self.m.list_representations(source_fingerprint=self.fp.digest, limit=1000)
        except MikroError as exc:
            log.warning("could not look for the images of %s: %s", self.report.path, exc)
            return []
        return [rep.id for rep in found if rep.store.id in ours]
