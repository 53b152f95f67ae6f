"""The image group's ``zarr.json`` kept in step with the database.

Metadata edits made through the API (name, pixel sizes, channel names and colours) and pyramids added
later (``recordLevels``) are written back to the store's OME-Zarr group, so that napari, bioio and
ome-zarr-py show what mikro shows. The server rewrites the document, not the client: a finished store is
read-only to clients (a write grant would let them change pixels too), and the server does it inside
the transaction that changes the row, so the row and the document never disagree for long and a failed
write rolls the edit back. One ``put`` replaces the whole document (atomic on S3; obstore's folder
store writes a temporary file and renames it), so readers see the old document or the new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mikro.datalayer._layout import ome_attributes, omero_colour
from mikro.server import _models as m
from mikro.server._context import Context

__all__ = ["GROUP_DOCUMENT", "patched_group", "write_back"]

GROUP_DOCUMENT = "zarr.json"


def patched_group(
    document: bytes,
    *,
    dims: Sequence[str],
    name: str,
    physical_size: Mapping[str, float | None] | None,
    channels: Sequence[Mapping[str, Any]],
    levels: Sequence[Mapping[str, Any]],
    method: str | None = None,
) -> bytes | None:
    """``document`` (a group ``zarr.json``) with the row's metadata; None if it is not an OME-Zarr image.

    Axes, scales and dataset paths are rebuilt from the dims, pixel sizes and levels; the ``omero``
    channels keep their windows and take the names and colours given.
    """
    try:
        node = json.loads(document)
        ome = node["attributes"]["ome"]
        [old] = ome["multiscales"]
    except (ValueError, KeyError, TypeError):
        return None
    sizes = {d: float(v) for d, v in (physical_size or {}).items() if v is not None and d in dims}
    fresh = ome_attributes(
        dims,
        sizes,
        name=name,
        levels=[level["scale"] for level in levels],
        method=old.get("type", method) if len(levels) > 1 else None,
    )["multiscales"][0]
    for dataset, level in zip(fresh["datasets"], levels, strict=True):
        dataset["path"] = level["path"]
    if len(levels) > 1 and "metadata" in old:
        fresh["metadata"] = old["metadata"]
    ome["multiscales"] = [fresh]
    for entry, channel in zip((ome.get("omero") or {}).get("channels") or [], channels, strict=False):
        if channel.get("name"):
            entry["label"] = channel["name"]
        colour = omero_colour(channel.get("color"))
        if colour:
            entry["color"] = colour
    return json.dumps(node, indent=2).encode()


async def write_back(
    ctx: Context, session: AsyncSession, rep: m.Representation, *, method: str | None = None
) -> None:
    """Rewrite the group ``zarr.json`` of ``rep``'s store from the row (call inside its transaction)."""
    store = await session.get(m.Store, rep.store_id)
    if store is None or not store.populated or store.array_path != "0":
        return  # not (yet) an OME-Zarr image mikro finished: nothing to keep in step
    storage = ctx.services.storage
    key = f"{store.key}/{GROUP_DOCUMENT}"
    levels = store.levels or [{"path": "0", "scale": [1.0] * len(rep.dims)}]

    def rewrite() -> None:
        document = storage.read(key)
        if document is None:
            return
        patched = patched_group(
            document,
            dims=rep.dims,
            name=rep.name,
            physical_size=rep.physical_size,
            channels=rep.channels or [],
            levels=levels,
            method=method,
        )
        if patched is not None and patched != document:
            storage.replace(key, patched)

    await ctx.services.run_io(rewrite)
