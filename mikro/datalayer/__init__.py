"""Pixel and table I/O: obstore stores from grants, zarr v3 write/read, xarray+dask views.

Everything that touches the object store runs on obstore's sync API in worker threads (or dask's
threads); the coroutines here never block the event loop, under asyncio and trio alike.
"""

from mikro.datalayer._files import (
    FILE_KEY,
    FileSource,
    FileWritten,
    download_file,
    source_size,
    upload_file,
    verified_pieces,
)
from mikro.datalayer._gc import freeze_startup_heap, full_collections_deferred
from mikro.datalayer._grant import GrantProvider, StorageGrant
from mikro.datalayer._layout import (
    ARRAY_PATH,
    AXIS_ORDER,
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    Compression,
    ImageLayout,
    choose_layout,
    ome_attributes,
)
from mikro.datalayer._pyramid import PYRAMID_THRESHOLD, PyramidOption, downsample, method_for_variety
from mikro.datalayer._read import ShardedArrayReader, compute, open_dataarray
from mikro.datalayer._store import GrantedStore, StoreStats
from mikro.datalayer._table import (
    TABLE_KEY,
    BlockingTableData,
    TableData,
    TableWritten,
    read_table,
    to_arrow,
    write_table,
)
from mikro.datalayer._thumbnail import Thumbnail, make_thumbnail
from mikro.datalayer._validate import DEFAULT_MAX_BYTES, PreparedImage, prepare_image
from mikro.datalayer._write import (
    ProgressCallback,
    WriteResult,
    small_image_keys,
    small_layout,
    write_image,
    write_small_image,
)

__all__ = [
    "ARRAY_PATH",
    "AXIS_ORDER",
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "DEFAULT_MAX_BYTES",
    "FILE_KEY",
    "PYRAMID_THRESHOLD",
    "TABLE_KEY",
    "BlockingTableData",
    "Compression",
    "FileSource",
    "FileWritten",
    "GrantProvider",
    "GrantedStore",
    "ImageLayout",
    "PreparedImage",
    "ProgressCallback",
    "PyramidOption",
    "ShardedArrayReader",
    "StorageGrant",
    "StoreStats",
    "TableData",
    "TableWritten",
    "Thumbnail",
    "WriteResult",
    "choose_layout",
    "compute",
    "download_file",
    "downsample",
    "freeze_startup_heap",
    "full_collections_deferred",
    "make_thumbnail",
    "method_for_variety",
    "ome_attributes",
    "open_dataarray",
    "prepare_image",
    "read_table",
    "small_image_keys",
    "small_layout",
    "source_size",
    "to_arrow",
    "upload_file",
    "verified_pieces",
    "write_image",
    "write_small_image",
    "write_table",
]
