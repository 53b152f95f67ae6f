"""Ingest microscope files (OME-TIFF, TIFF, OME-Zarr; CZI, ND2, LIF with ``mikro[formats]``) as images:
``await m.ingest(paths)`` or ``mikro ingest PATH...``. Resumable: each image records its source's
fingerprint, and a rerun skips what is stored."""

from mikro.ingest._pipeline import DEFAULT_CONCURRENCY, SHARD_COPIES, SHARDS_PER_FILE, ingest
from mikro.ingest._readers import EXTRA_FOR_SUFFIX, ReaderError, Scene, open_source
from mikro.ingest._report import FileReport, IngestProgress, IngestReport, PlannedImage

__all__ = [
    "DEFAULT_CONCURRENCY",
    "EXTRA_FOR_SUFFIX",
    "SHARDS_PER_FILE",
    "SHARD_COPIES",
    "FileReport",
    "IngestProgress",
    "IngestReport",
    "PlannedImage",
    "ReaderError",
    "Scene",
    "ingest",
    "open_source",
]
