"""The ingest pipeline: expand paths, then batch by batch (up to 2,000 files or 1 GiB) fingerprint the
sources, ask the server once which are already stored, and read and upload the rest, several files at
once, while the next batch is hashed.

Every image goes through :meth:`mikro.Mikro.create_representation` (registered in batches with the other
uploads in flight: the session's group commit, one ``createRepresentations`` request for the images
finished meanwhile), so an ingested image is stored exactly as an uploaded array is. Small files with
nothing stored yet (up to `GROUP_FILE_BYTES`) go up in groups (`_group_size`) instead: read in one
worker-thread call, their originals kept at once, their images created by one
:meth:`mikro.Mikro.create_representations` batch (several written per thread call, one request), since
per small file the hops between threads and requests cost more than its pixels (see `_ingest_group`).
Reading happens in worker threads: a scene of up to one shard is read whole when it is opened, a
larger one inside the upload (a shard's region of the lazy array is read, encoded and put in one
worker's turn); the event loop only schedules.

Memory: each file uploads with its own limiter of `SHARDS_PER_FILE` worker threads, so at most that many
shard regions of one file are read and encoded at once, whatever the file's size. One region in flight
costs up to `SHARD_COPIES` shards of memory (the planes dask reads and their concatenation, the encoded
shard and the encoder's reusable buffer, and the coarser pyramid levels built from the region;
`mikro.datalayer` aims at 32 MiB a shard). Peak RSS is therefore at most
``SHARD_COPIES * SHARDS_PER_FILE * shard size * concurrency`` (384 MiB a file) above the process's own
footprint (about 250-300 MiB with bioio, dask and zarr imported). Measured (pixels only, one file at a
time): 649 MiB peak for a 2 GiB file, 579 MiB for 512 MiB, 252 MiB for a 512-byte one
(``tests/ingest/test_cli.py``). Small files share a slot of ``concurrency``: a group takes a whole slot
and holds at most `GROUP_BYTES` (32 MiB) of pixels read, besides one shard read and dropped when a scene
is too large for it; a file of a few MiB takes one of its `SLOT_SHARES` shares per MiB (a file of 8 MiB
or more a whole slot).

A file is all or nothing: when one of its scenes fails, the images already made from it in this run are
deleted and the file is reported failed. A cancelled run keeps the images that were complete (each image
is atomic) and a rerun skips them: fingerprints are content hashes, so a changed file is a new source.

With ``cluster=`` (a dask.distributed ``Client``) the hashing and the per-file read, encode and upload run
on the cluster's workers instead, and the images are registered here (see `_cluster`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from mikro._exceptions import MikroError
from mikro.client._batch import PreparedBatch, prepared_batch
from mikro.datalayer import DEFAULT_COMPRESSION, Compression, PyramidOption
from mikro.datalayer._warmup import import_pixel_stack
from mikro.ingest._readers import ReaderError, Scene, Source, open_source
from mikro.ingest._report import FileReport, IngestProgress, IngestReport, PlannedImage
from mikro.ingest._sources import Fingerprint, expand_paths, fingerprint, signature

if TYPE_CHECKING:
    from mikro.client._mikro import Mikro
    from mikro.ingest._cluster import ClusterIngest

__all__ = ["DEFAULT_CONCURRENCY", "SHARDS_PER_FILE", "ingest"]

#: Files read and uploaded at once.
DEFAULT_CONCURRENCY = 4
#: Worker threads (and so shard regions in memory) per file being uploaded.
SHARDS_PER_FILE = 2
#: Memory one shard region in flight may cost, in shards (see the module's docstring).
SHARD_COPIES = 6
#: Fingerprints asked about per ``sourcesIngested`` request (the server's limit).
LOOKUP_BATCH = 2000
#: Files hashed per worker-thread call: small files cost little more than the call itself.
HASH_BATCH = 32
#: Bytes of files hashed (and looked up) ahead of the uploads: the files of one batch upload while the
#: next batch is hashed.
HASH_AHEAD_BYTES = 2**30
#: Small files share a ``concurrency`` slot: a file of up to ``SLOT_SHARE_BYTES`` takes one share of
#: ``SLOT_SHARES``. A slot's memory (shards of a large file) holds many small images, and registrations
#: batch better with more of them in flight.
SLOT_SHARES = 8
SLOT_SHARE_BYTES = 2**20

#: Files of up to this size with nothing stored yet go up in groups (see `_ingest_group`), a group
#: taking one ``concurrency`` slot: a batch's small files in about ``GROUPS_PER_BATCH`` groups of
#: ``GROUP_FILES`` to ``GROUP_FILES_MAX`` files (`_group_size`).
GROUP_FILE_BYTES = SLOT_SHARE_BYTES
GROUP_FILES = 16
GROUP_FILES_MAX = 64
GROUPS_PER_BATCH = 8
#: A group's scenes are read whole, each of at most this many bytes (a small image: one shard, written
#: whole), and at most ``GROUP_BYTES`` in all; a file with more goes up alone.
GROUP_SCENE_BYTES = 2 * 2**20
GROUP_BYTES = 32 * 2**20

ProgressHandler = Callable[[IngestProgress], None]


class _Progress:
    def __init__(self, handler: ProgressHandler | None, files: int, total: int) -> None:
        self.handler = handler
        self.files_total, self.bytes_total = files, total
        self.files_done = self.bytes_done = self.created = 0
        self.partial: dict[str, int] = {}

    def file_part(self, path: str, done: int) -> None:
        self.partial[path] = done
        self.emit(path)

    def file_done(self, report: FileReport) -> None:
        self.partial.pop(report.path, None)
        self.files_done += 1
        self.bytes_done += report.bytes
        self.created += report.created
        self.emit(None)

    def emit(self, current: str | None) -> None:
        if self.handler is not None:
            done = self.bytes_done + sum(self.partial.values())
            self.handler(
                IngestProgress(
                    self.files_done, self.files_total, done, self.bytes_total, self.created, current
                )
            )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ReaderError | MikroError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = f"unreadable: {exc.strerror or exc}"
    else:
        text = f"unreadable: {type(exc).__name__}: {exc}"
    return " ".join(text.split())


class _Slots:
    """``concurrency`` slots of :data:`SLOT_SHARES` shares; a file takes shares by its size."""

    def __init__(self, slots: int) -> None:
        self.free = slots * SLOT_SHARES
        self._changed = anyio.Event()

    @staticmethod
    def shares(size: int) -> int:
        return min(SLOT_SHARES, max(1, -(-size // SLOT_SHARE_BYTES)))

    @contextlib.asynccontextmanager
    async def held(self, size: int) -> AsyncIterator[None]:
        n = self.shares(size)
        while self.free < n:
            await self._changed.wait()
        self.free -= n
        try:
            yield
        finally:
            self.free += n
            self._changed.set()
            self._changed = anyio.Event()


class _Ahead:
    """Bytes of files hashed but not yet ingested; the next batch is hashed once they are at most
    :data:`HASH_AHEAD_BYTES` (about one batch)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._changed = anyio.Event()

    def add(self, size: int) -> None:
        self.bytes += size

    def remove(self, size: int) -> None:
        self.bytes -= size
        self._changed.set()
        self._changed = anyio.Event()

    async def room(self) -> None:
        while self.bytes > HASH_AHEAD_BYTES:
            await self._changed.wait()


def _sizes(paths: Sequence[Path]) -> list[int]:
    """Each source's size in bytes (0 when it cannot be read: its hashing reports why)."""
    out = []
    for path in paths:
        try:
            out.append(signature(path)[1])
        except OSError:
            out.append(0)
    return out


def _batches(sizes: Sequence[int]) -> Iterator[list[int]]:
    """Indices of the sources in batches of at most :data:`LOOKUP_BATCH` files and about
    :data:`HASH_AHEAD_BYTES` (at least one file each)."""
    batch: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if batch and (len(batch) == LOOKUP_BATCH or total + size > HASH_AHEAD_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(i)
        total += size
    if batch:
        yield batch


def _hash_all(paths: Sequence[Path], legacy: bool = False) -> list[Fingerprint | BaseException]:
    out: list[Fingerprint | BaseException] = []
    for path in paths:
        try:
            out.append(fingerprint(path, legacy=legacy))
        except OSError as exc:
            out.append(exc)
    return out


async def _fingerprints(
    paths: list[Path], limiter: anyio.CapacityLimiter, legacy: bool
) -> list[Fingerprint | BaseException]:
    results: list[list[Fingerprint | BaseException]] = [[] for _ in range(0, len(paths), HASH_BATCH)]

    async def run(i: int) -> None:
        batch = paths[i * HASH_BATCH : (i + 1) * HASH_BATCH]
        results[i] = await anyio.to_thread.run_sync(_hash_all, batch, legacy, limiter=limiter)

    async with anyio.create_task_group() as tg:
        for i in range(len(results)):
            tg.start_soon(run, i)
    return [r for batch in results for r in batch]


async def _cluster_for(cluster: Any, limiter: anyio.CapacityLimiter) -> ClusterIngest | None:
    """The dask.distributed cluster to ingest on (see `_cluster`), or None for this process."""
    if cluster is None:
        return None
    from mikro.ingest._cluster import ClusterIngest

    return await ClusterIngest.connect(cluster, limiter)


async def _stored(
    m: Mikro, hashed: Iterable[Fingerprint | BaseException]
) -> dict[str, tuple[int | None, set[int]]]:
    """fingerprint -> (its file's scene count, the scenes already stored under any of its spellings),
    one request per batch."""
    found: dict[str, tuple[int | None, set[int]]] = {}
    owner = {s: fp.digest for fp in hashed if isinstance(fp, Fingerprint) for s in fp.spellings}
    unique = list(owner)
    for start in range(0, len(unique), LOOKUP_BATCH):
        for match in await m.sources_ingested(unique[start : start + LOOKUP_BATCH]):
            digest = owner[match.fingerprint]
            count, scenes = found.get(digest, (None, set()))
            scenes.add(match.scene or 0)
            found[digest] = (match.scene_count if match.scene_count is not None else count, scenes)
    return found


async def _stored_originals(m: Mikro, todo: Sequence[Fingerprint]) -> dict[str, str]:
    """fingerprint -> the id of the original (a `File`) an earlier run kept of that source, for the
    files of one batch in one request: an interrupted run leaves some (a killed one even with no image
    of them)."""
    owner = {h: fp.digest for fp in todo for h in fp.original_hashes}
    unique = list(owner)
    found: dict[str, str] = {}
    for start in range(0, len(unique), LOOKUP_BATCH):
        async for file in m.iter_files(content_hashes=unique[start : start + LOOKUP_BATCH], page_size=500):
            found.setdefault(owner[file.content_hash], file.id)
    return found


def _image_name(path: Path, scene: Scene, count: int) -> str:
    return path.name if count == 1 else f"{path.name} [{scene.index}: {scene.name}]"


async def ingest(
    m: Mikro,
    paths: str | Path | Iterable[str | Path],
    *,
    dataset: Any = None,
    sample: Any = None,
    tags: Iterable[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    keep_original: bool = True,
    on_progress: ProgressHandler | None = None,
    dry_run: bool = False,
    cluster: Any = None,
    compression: Compression = DEFAULT_COMPRESSION,
    pyramid: PyramidOption = "auto",
) -> IngestReport:
    """Ingest microscope files; see :meth:`mikro.Mikro.ingest`."""
    started = time.perf_counter()
    if concurrency < 1:
        raise MikroError("concurrency must be at least 1")
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    limiter = m.thread_limiter
    # Readers import dask in worker threads. Importing it there while the session's warm-up thread
    # imports it too can leave a half-imported dask behind for the rest of the process.
    await import_pixel_stack()
    on_cluster = await _cluster_for(cluster, limiter)
    sources, missing = await anyio.to_thread.run_sync(expand_paths, given, limiter=limiter)
    reports: list[FileReport] = [FileReport(p, "failed", error="no such file or directory") for p in missing]
    found = [FileReport(str(path), "created") for path in sources]
    reports += found
    keep = {"dataset": dataset, "sample": sample, "tags": list(tags)}
    encoding = {"compression": compression, "pyramid": pyramid}
    # Asked once per run: only a user with images from before BLAKE3 fingerprints pays for SHA-256 too.
    legacy = bool(sources) and await m.legacy_source_fingerprints()
    if on_cluster is not None:
        hashed = await on_cluster.fingerprints(sources, partial(_hash_all, legacy=legacy), HASH_BATCH)
        stored = await _stored(m, hashed)
        progress = _Progress(
            on_progress, len(sources), sum(h.size for h in hashed if isinstance(h, Fingerprint))
        )
        todo = _to_ingest(found, range(len(sources)), hashed, stored, progress)
        await on_cluster.ingest(
            m,
            todo,
            keep,
            progress,
            concurrency,
            dry_run=dry_run,
            keep_original=keep_original,
            encoding=encoding,
        )
        return IngestReport(files=reports, seconds=time.perf_counter() - started)
    sizes = await anyio.to_thread.run_sync(_sizes, sources, limiter=limiter)
    progress = _Progress(on_progress, len(sources), sum(sizes))
    slots = _Slots(concurrency)
    ahead = _Ahead()

    async def run(report: FileReport, fp: Fingerprint, present: set[int], original: Any) -> None:
        try:
            async with slots.held(fp.size):
                await _ingest_file(
                    m,
                    report,
                    fp,
                    present,
                    {**keep, **encoding},
                    progress,
                    dry_run=dry_run,
                    keep_original=keep_original,
                    original=original,
                )
                progress.file_done(report)
        finally:
            ahead.remove(fp.size)

    async def run_group(group: list[tuple[FileReport, Fingerprint]], originals: dict[str, Any]) -> None:
        try:
            async with slots.held(SLOT_SHARE_BYTES * SLOT_SHARES):
                await _ingest_group(
                    m,
                    group,
                    {**keep, **encoding},
                    progress,
                    keep_original=keep_original,
                    found=originals,
                )
        finally:
            ahead.remove(sum(fp.size for _, fp in group))

    with contextlib.ExitStack() as demand:
        async with anyio.create_task_group() as tg:
            # Batch by batch: the files of one batch upload while the next one is hashed (and its bytes,
            # just read, are still in the page cache when the upload reads them), never more ahead.
            for batch in _batches(sizes):
                await ahead.room()
                hashed = await _fingerprints([sources[i] for i in batch], limiter, legacy)
                stored = await _stored(m, hashed)
                todo = _to_ingest(found, batch, hashed, stored, progress)
                kept = {}
                if keep_original and not dry_run and todo:
                    kept = await _stored_originals(m, [fp for _, fp, _ in todo])
                small: list[tuple[FileReport, Fingerprint]] = []
                for report, fp, present in todo:
                    ahead.add(fp.size)
                    if not dry_run and not present and fp.size <= GROUP_FILE_BYTES:
                        small.append((report, fp))
                    else:
                        tg.start_soon(run, report, fp, present, kept.get(fp.digest))
                # The stores the groups will take, counted at once: the session's reservations then reserve
                # them in one request of each kind, not one per group as the groups start; each request
                # costs the server more than its stores.
                for kind in ("ZARR", "MEDIA") if keep_original else ("ZARR",):
                    demand.enter_context(m.reservations.uploading(kind, len(small)))
                size = _group_size(len(small))
                for start in range(0, len(small), size):
                    tg.start_soon(run_group, small[start : start + size], kept)
    return IngestReport(files=reports, seconds=time.perf_counter() - started)


def _group_size(files: int) -> int:
    """Files per group for a batch of ``files`` small files. Each group costs the server two requests
    (its originals, its images) of ~15 ms of CPU each besides ~0.4 and ~0.8 ms per file (measured on
    the reference server, SQLite): groups of 64 cost it ~1.6 ms per small file, groups of 16 ~3. But
    a batch is cut into at least :data:`GROUPS_PER_BATCH` groups while they keep :data:`GROUP_FILES`
    files, so that its groups still fill the slots and an interrupted run (all or nothing per group)
    loses only a part of it."""
    return min(GROUP_FILES_MAX, max(GROUP_FILES, -(-files // GROUPS_PER_BATCH)))


def _to_ingest(
    reports: list[FileReport],
    batch: Iterable[int],
    hashed: list[Fingerprint | BaseException],
    stored: dict[str, tuple[int | None, set[int]]],
    progress: _Progress,
) -> list[tuple[FileReport, Fingerprint, set[int]]]:
    """The files of ``batch`` (indices into ``reports``) to ingest, with their fingerprints and the scenes
    already stored; the others reported (unreadable: failed; every scene stored: skipped)."""
    todo = []
    for i, result in zip(batch, hashed, strict=True):
        report = reports[i]
        if not isinstance(result, Fingerprint):
            report.status, report.error = "failed", _error_text(result)
            progress.file_done(report)
            continue
        report.fingerprint, report.bytes = result.digest, result.size
        count, scenes = stored.get(result.digest, (None, set()))
        if count is not None and len(scenes) >= count:
            report.status, report.skipped = "skipped", len(scenes)
            progress.file_done(report)
            continue
        todo.append((report, result, scenes))
    return todo


async def _ingest_file(
    m: Mikro,
    report: FileReport,
    fp: Fingerprint,
    present: set[int],
    keep: dict[str, Any],
    progress: _Progress,
    *,
    dry_run: bool,
    keep_original: bool,
    original: Any = None,
) -> None:
    """Ingest one file; ``original``: the id of its original kept by an earlier run (see
    `_stored_originals`)."""
    started = time.perf_counter()
    path = Path(report.path)
    limiter = m.thread_limiter
    source: Source | None = None
    uploaded = False
    try:
        source = await anyio.to_thread.run_sync(open_source, path, limiter=limiter)
        count = source.scene_count
        if keep_original and not dry_run and source.is_file:
            if original is None:
                original, uploaded = await _upload_original(m, path, fp, keep["tags"]), True
            report.original_file = original
        for index in range(count):
            if index in present:
                report.skipped += 1
                continue
            scene = await anyio.to_thread.run_sync(source.scene, index, limiter=limiter)
            if dry_run:
                report.planned.append(_planned(scene))
                continue
            on_shard = partial(_scene_progress, progress, report, index, count)
            rep = await _upload(m, scene, path, fp, count, {**keep, "original_file": original}, on_shard)
            report.images.append(rep.id)
        await _unchanged(path, fp, limiter)
        if dry_run:
            report.status = "planned"
        elif not report.images:
            report.status = "skipped"
    except Exception as exc:
        await _fail(m, report, _error_text(exc), original if uploaded else None)
    except BaseException:
        # Cancelled: the images made stay (each is complete), and so does their original; an original
        # no image of this run points to goes, so that a rerun, which looks originals up only for files
        # with stored images, never keeps it twice.
        if uploaded and not report.images:
            with anyio.CancelScope(shield=True), contextlib.suppress(MikroError):
                await m.delete_file(original)
        raise
    finally:
        report.seconds = time.perf_counter() - started
        if source is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(source.close, limiter=limiter)


def _read_group(paths: Sequence[Path]) -> list[list[Scene] | None]:
    """Each file's scenes read whole (blocking), or None for a file that goes up alone: one that fails to
    open or read (its own upload reports why), with a scene not read into memory or larger than
    :data:`GROUP_SCENE_BYTES`, or past :data:`GROUP_BYTES` for the group."""
    import numpy as np

    out: list[list[Scene] | None] = []
    total = 0
    for path in paths:
        scenes: list[Scene] | None = None
        try:
            source = open_source(path)
        except Exception:
            out.append(None)
            continue
        try:
            if source.is_file:
                scenes = [source.scene(i) for i in range(source.scene_count)]
        except Exception:
            scenes = None
        finally:
            with contextlib.suppress(Exception):
                source.close()
        if scenes is not None:
            size = sum(s.nbytes for s in scenes)
            whole = all(isinstance(s.data, np.ndarray) and s.nbytes <= GROUP_SCENE_BYTES for s in scenes)
            if not scenes or not whole or total + size > GROUP_BYTES:
                scenes = None
            else:
                total += size
        out.append(scenes)
    return out


def _changed(files: Sequence[tuple[Path, tuple[int, int, int]]]) -> list[str | None]:
    """Per file, why it may not be stored (it changed while ingested), or None (blocking)."""
    out: list[str | None] = []
    for path, before in files:
        try:
            ensure_unchanged(path, before)
            out.append(None)
        except (ReaderError, OSError) as exc:
            out.append(_error_text(exc))
    return out


async def _ingest_group(
    m: Mikro,
    group: list[tuple[FileReport, Fingerprint]],
    keep: dict[str, Any],
    progress: _Progress,
    *,
    keep_original: bool,
    found: dict[str, Any],
) -> None:
    """Small files with no image stored, read in one worker-thread call and their images created with
    one `create_representations` batch (written several per thread call, registered together), their
    originals uploaded at once where ``found`` (see `_stored_originals`) has none. A file that does not
    fit (see `_read_group`) goes up alone; when the batch fails, nothing of it is left and each of its
    files goes up alone, so that a bad file fails by itself. A cancelled batch leaves nothing, and the
    originals it uploaded are removed."""
    started = time.perf_counter()
    # Small local files: their reading and checking hold the GIL between short system calls.
    limiter = m.local_limiter
    paths = [Path(report.path) for report, _ in group]
    read = await anyio.to_thread.run_sync(_read_group, paths, limiter=limiter)
    alone = [entry for entry, scenes in zip(group, read, strict=True) if scenes is None]
    # Each file's Path made once: pathlib's parsing was a few percent of a small file's CPU.
    batch = [
        (r, fp, scenes, path)
        for (r, fp), scenes, path in zip(group, read, paths, strict=True)
        if scenes is not None
    ]
    for report, *_ in batch:
        progress.file_part(report.path, 0)
    # The ids of the originals uploaded here (theirs to remove again), and every file's (uploaded or
    # found).
    fresh: list[str | None] = [None] * len(batch)
    originals: list[str | None] = [None] * len(batch)

    async def drop_originals() -> None:
        with anyio.CancelScope(shield=True):
            for original in fresh:
                if original is not None:
                    with contextlib.suppress(MikroError):
                        await m.delete_file(original)

    reps: list[str] | None = None
    try:
        if keep_original and batch:
            # Where a file's original fails, the file goes up alone (which tries again, and reports).
            missing = [i for i, (_, fp, *_) in enumerate(batch) if fp.digest not in found]
            if missing:
                uploaded = await m._store_files(
                    [(batch[i][3], batch[i][1].digest) for i in missing], {"tags": keep["tags"]}
                )
                for i, file in zip(missing, uploaded, strict=True):
                    fresh[i] = file
            originals = [found.get(fp.digest) or fresh[i] for i, (_, fp, *_) in enumerate(batch)]
        items = [
            (scene, report, path, fp.digest, index, len(scenes), originals[i])
            for i, (report, fp, scenes, path) in enumerate(batch)
            if not keep_original or originals[i] is not None
            for index, scene in enumerate(scenes)
        ]
        if items:
            # Checked and prepared in a worker thread: per small image, that is more of the event
            # loop's time than its registration.
            prepared = await anyio.to_thread.run_sync(_prepared, items, keep, progress, limiter=limiter)
            reps = await m._create_representation_batch(prepared)
    except Exception:
        # The batch left nothing: every file of it goes up alone.
        await drop_originals()
        originals = fresh = [None] * len(batch)
    except BaseException:
        await drop_originals()
        raise
    stored = [i for i in range(len(batch)) if reps is not None and (not keep_original or originals[i])]
    if reps is not None:
        made = iter(reps)
        for i in stored:
            report, _, scenes, _ = batch[i]
            report.images = [next(made) for _ in scenes]
            report.original_file = originals[i]
    kept = set(stored)
    alone += [batch[i][:2] for i in range(len(batch)) if i not in kept]
    async with anyio.create_task_group() as tg:
        for report, fp in alone:
            tg.start_soon(_ingest_alone, m, report, fp, keep, progress, keep_original, found.get(fp.digest))
        await _finish_group(m, [batch[i] for i in stored], fresh, stored, progress, started)


#: One image of a group: its scene, its file's report, path and fingerprint, its index and the file's
#: scene count, the id of the file's original.
_GroupImage = tuple[Scene, FileReport, Path, str, int, int, str | None]


def _prepared(items: list[_GroupImage], keep: dict[str, Any], progress: _Progress) -> PreparedBatch:
    """A group's images checked and prepared for `create_representations` (blocking: CPU)."""
    return prepared_batch(
        {
            **scene_image(scene, path, digest, count),
            **keep,
            "original_file": original,
            "progress": partial(_scene_progress, progress, report, index, count),
        }
        for scene, report, path, digest, index, count, original in items
    )


async def _ingest_alone(
    m: Mikro,
    report: FileReport,
    fp: Fingerprint,
    keep: dict[str, Any],
    progress: _Progress,
    keep_original: bool,
    original: Any,
) -> None:
    await _ingest_file(
        m, report, fp, set(), keep, progress, dry_run=False, keep_original=keep_original, original=original
    )
    progress.file_done(report)


async def _finish_group(
    m: Mikro,
    done: list[tuple[FileReport, Fingerprint, list[Scene], Path]],
    uploaded: list[Any],
    indices: list[int],
    progress: _Progress,
    started: float,
) -> None:
    """Report a batch's stored files; one that changed while it was read is failed and its images and
    the original uploaded for it (``uploaded``, by index in the batch) deleted."""
    why = await anyio.to_thread.run_sync(
        _changed, [(path, fp.signature) for _, fp, _, path in done], limiter=m.local_limiter
    )
    for (report, *_), i, error in zip(done, indices, why, strict=True):
        if error is not None:
            await _fail(m, report, error, uploaded[i])
        report.seconds = time.perf_counter() - started
        progress.file_done(report)


async def _fail(m: Mikro, report: FileReport, error: str, original: Any) -> None:
    """Mark a file failed and remove what of it was stored: its images, and ``original`` unless None
    (one this run uploaded)."""
    report.status, report.error = "failed", error
    with anyio.CancelScope(shield=True):
        await _delete_all(m, report.images)
        if original is not None:
            with contextlib.suppress(MikroError):
                await m.delete_file(original)
    report.images, report.original_file = [], None


async def _upload_original(m: Mikro, path: Path, fp: Fingerprint, tags: list[str]) -> str:
    """The id of the ``File`` keeping ``path`` as it is, uploaded now (`_stored_originals` found none
    before)."""
    # The fingerprint is the file's content hash: the bytes are not hashed a second time on the way up
    # (the stat signature, checked once the file is done, tells whether they changed meanwhile).
    return (await m._store_file(path, None, None, {"tags": tags}, content_hash=fp.digest)).id


async def _unchanged(path: Path, fp: Fingerprint, limiter: anyio.CapacityLimiter) -> None:
    await anyio.to_thread.run_sync(ensure_unchanged, path, fp.signature, limiter=limiter)


def ensure_unchanged(path: Path, before: tuple[int, int, int]) -> None:
    """Raise when the source's stat signature is no longer ``before`` (blocking)."""
    if signature(path) != before:
        raise ReaderError("the file changed while it was being ingested: not stored")


def _scene_progress(
    progress: _Progress, report: FileReport, index: int, count: int, done: int, total: int
) -> None:
    fraction = (index + (done / total if total else 1.0)) / count
    progress.file_part(report.path, int(report.bytes * fraction))


async def _upload(
    m: Mikro,
    scene: Scene,
    path: Path,
    fp: Fingerprint,
    count: int,
    keep: dict[str, Any],
    on_shard: Callable[[int, int], None],
) -> Any:
    return await m.create_representation(
        **scene_image(scene, path, fp.digest, count),
        progress=on_shard,
        limiter=anyio.CapacityLimiter(SHARDS_PER_FILE),
        **keep,
    )


def scene_image(scene: Scene, path: Path, digest: str, count: int) -> dict[str, Any]:
    """``create_representation``'s arguments for one scene: its pixels, name, metadata and source (the
    local path and the cluster's workers both store a scene from these)."""
    import xarray as xr

    meta = scene.metadata
    channels = meta.channels(scene.data.shape[scene.dims.index("c")] if "c" in scene.dims else 1)
    names = [c["name"] for c in channels or []]
    named = "c" in scene.dims and names and all(isinstance(n, str) for n in names)
    # Channel names as the c coordinate too: the store's OME-Zarr metadata takes them from the image.
    # Without names the array goes as it is: a DataArray would cost a small image ~40 µs for nothing.
    data = xr.DataArray(scene.data, dims=scene.dims, coords={"c": names}) if named else scene.data
    return {
        "data": data,
        "name": _image_name(path, scene, count),
        "dims": scene.dims,
        "channels": channels,
        "pixel_size": {d: v for d, v in meta.pixel_size.items() if d in scene.dims} or None,
        "variety": scene.variety,
        "acquisition_date": meta.acquisition_date,
        "acquisition": meta.acquisition,
        "source_fingerprint": digest,
        "source_scene": scene.index,
        "source_scene_name": scene.name,
        "source_scene_count": count,
    }


def _planned(scene: Scene) -> PlannedImage:
    meta = scene.metadata
    n_channels = scene.data.shape[scene.dims.index("c")] if "c" in scene.dims else 1
    return PlannedImage(
        scene=scene.index,
        name=scene.name,
        shape=[int(n) for n in scene.data.shape],
        dims=list(scene.dims),
        dtype=str(scene.data.dtype),
        channels=[c["name"] for c in meta.channels(n_channels) or []],
        pixel_size=dict(meta.pixel_size),
    )


async def _delete_all(m: Mikro, ids: list[str]) -> None:
    for rep_id in ids:
        # Already gone: nothing of it is left either way.
        with contextlib.suppress(MikroError):
            await m.delete_representation(rep_id)
