"""Making images on the reference server the long way: upload grant, zarr v3 on disk, finish, create."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np

import mikro
from mikro.api import Dataset, Representation


def _write_tiny_zarr(path: str) -> None:
    import zarr

    # Sharded like the data plane writes: the server reads (and accepts) sharded arrays only.
    array = zarr.create_array(
        store=path,
        shape=(2, 4, 4),
        chunks=(1, 4, 4),
        shards=(2, 4, 4),
        dtype="uint16",
        dimension_names=("z", "y", "x"),
    )
    array[:] = np.arange(32, dtype="uint16").reshape(2, 4, 4)


async def create_image(m: mikro.Mikro, name: str, dataset: Dataset | None = None) -> Representation:
    """A real Representation: the pixels are written before the row exists, as the server demands."""
    grant = await m.request_upload("ZARR")
    assert grant.kind.value == "FILE", "these tests use the folder store"
    Path(grant.path).mkdir(parents=True, exist_ok=True)
    # zarr's sync API, off the event loop (its async API does not run under trio).
    await anyio.to_thread.run_sync(_write_tiny_zarr, grant.path)
    store = await m.finish_upload(grant.store_id)
    row: dict[str, object] = {"store": store.id, "name": name}
    if dataset is not None:
        row["dataset"] = dataset.id
    return await m._create_representation_row(row)
