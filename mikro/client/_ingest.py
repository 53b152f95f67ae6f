"""``m.ingest(paths)``: the session's entry to :mod:`mikro.ingest` (imported on first use: the ingest
layer sits above the client and pulls in bioio and its readers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mikro.datalayer import DEFAULT_COMPRESSION, Compression, PyramidOption

if TYPE_CHECKING:
    from mikro.ingest import IngestProgress, IngestReport

__all__ = ["IngestMixin"]


class IngestMixin:
    """The ingest method of :class:`mikro.Mikro`."""

    async def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        dataset: Any = None,
        sample: Any = None,
        tags: Iterable[str] = (),
        concurrency: int = 4,
        keep_original: bool = True,
        on_progress: Callable[[IngestProgress], None] | None = None,
        dry_run: bool = False,
        cluster: Any = None,
        compression: Compression = DEFAULT_COMPRESSION,
        pyramid: PyramidOption = "auto",
    ) -> IngestReport:
        """Ingest microscope files: each scene of each file becomes one image; returns the report.

        ``paths``: files, folders (walked recursively; an OME-Zarr folder is one source) and globs.
        Formats: OME-TIFF, TIFF (plain, ImageJ), OME-Zarr; CZI, ND2 and LIF with ``mikro[formats]``.
        Channel names and wavelengths, pixel sizes (micrometres), time interval, acquisition date,
        instrument, objective and stage position are kept where the file has them.

        Resumable: every image records its file's content hash (``source_fingerprint``) and scene,
        and a rerun skips the scenes already stored (one request per 2000 files asks). A file that
        fails (unreadable, no reader, truncated, unsupported dims or dtype, changed while read) is
        reported with its reason and leaves nothing behind; the other files go on. ``concurrency``
        files are read and uploaded at once; ``on_progress(IngestProgress)`` is called on the event
        loop as they advance. ``dry_run`` reads the files' metadata and writes nothing.
        With ``keep_original`` (the default) each source file is also stored as it is, a ``File``
        linked to its images (``rep.original_file``; an interrupted run's upload is reused, found by
        content hash); OME-Zarr folders are not files and keep no original.

        ``cluster`` (a ``dask.distributed.Client``, or ``"auto"``: dask's default scheduler when it is
        one) reads, encodes and uploads each file on the cluster's workers instead of in this process
        (``pip install 'mikro[cluster]'``); the workers must see the files at the same paths, and reach
        the store (and the server, to renew grants: they get the session's token). Images are still
        registered here, in batches, and the report is the same. ``on_progress`` then advances per file,
        and at least two files per worker thread are in flight, whatever ``concurrency``.

        ``compression`` and ``pyramid`` are :meth:`create_representation`'s, for every image: a lab
        with fast local disks may store uncompressed (``compression=None``) and without coarser levels
        (``pyramid=None``).
        """
        from mikro.ingest import ingest

        return await ingest(
            self,  # type: ignore[arg-type]
            paths,
            dataset=dataset,
            sample=sample,
            tags=tags,
            concurrency=concurrency,
            keep_original=keep_original,
            on_progress=on_progress,
            dry_run=dry_run,
            cluster=cluster,
            compression=compression,
            pyramid=pyramid,
        )
