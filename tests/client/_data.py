"""Making image, table and thumbnail rows for client tests through the session's data-plane seam
(thumbnails through the public ``create_thumbnail``: their PNG goes to the server, not to a store).

The objects are written straight into the folder a FILE grant names (the reference server in the
tests keeps its objects in a local folder), so these tests do not depend on the datalayer.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio

import mikro
from mikro.api import Representation, Table, Thumbnail, UploadKind


def _write_zarr(path: str, shape: tuple[int, ...], dims: tuple[str, ...]) -> None:
    import numpy as np
    import zarr

    # Sharded like the data plane writes (one shard, one chunk per plane), so its reader can open it.
    chunks = (1,) * (len(shape) - 2) + shape[-2:]
    array = zarr.create_array(
        store=path, shape=shape, chunks=chunks, shards=shape, dtype="uint16", dimension_names=dims
    )
    array[...] = np.arange(int(np.prod(shape)), dtype="uint16").reshape(shape)


async def make_representation(
    m: mikro.Mikro,
    name: str,
    *,
    shape: tuple[int, ...] = (2, 4, 5),
    dims: tuple[str, ...] = ("z", "y", "x"),
    **input: Any,
) -> Representation:
    grant = await m.request_upload(UploadKind.ZARR)
    assert grant.kind == mikro.StoreKind.FILE, "client tests expect the reference server's folder store"
    await anyio.to_thread.run_sync(_write_zarr, grant.path, shape, dims)
    store = await m.finish_upload(grant.store_id)
    return await m._create_representation_row({"store": store.id, "name": name, **input})


def _write_parquet(path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    Path(path).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"label": [1, 2], "area": [3.5, 4.0]}), f"{path}/table.parquet")


async def make_table(m: mikro.Mikro, name: str, **input: Any) -> Table:
    grant = await m.request_upload(UploadKind.PARQUET)
    await anyio.to_thread.run_sync(_write_parquet, grant.path)
    return await m._create_table_row({"store": grant.store_id, "name": name, **input})


def png_bytes(width: int = 8, height: int = 6, value: int = 128) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), value).save(buffer, format="PNG")
    return buffer.getvalue()


async def make_thumbnail(m: mikro.Mikro, representation: Representation) -> Thumbnail:
    return await m.create_thumbnail(representation, png_bytes())
