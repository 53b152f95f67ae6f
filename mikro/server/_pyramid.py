"""Adding a pyramid to an image stored without one: ``requestLevelsUpload`` then ``recordLevels``.

The client writes the new levels under a fresh prefix inside the image's group
(``<key>/levels-<hex>/1``, ``.../2`` ...), which nothing lists yet; ``recordLevels`` then checks they are
there, records them on the store and rewrites the group's ``zarr.json`` to list them, in one
transaction. Readers therefore see the image without its pyramid or with all of it, never part of
it; a build cancelled halfway changes nothing (its client deletes what it wrote). Level 0 is never
touched.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from mikro.datalayer._pyramid import method_for_variety
from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._crud import begin_mutation, get_store
from mikro.server._data_plane import _grant, _issue_grant, _record_grant
from mikro.server._errors import BadUserInput, Conflict
from mikro.server._inputs import LevelInput
from mikro.server._ome_group import write_back
from mikro.server._representation_create import REP
from mikro.server._zarr_meta import ArrayInfo, with_levels

__all__ = ["LEVELS_PREFIX", "PyramidMutation"]

#: New levels are written under ``<store key>/levels-<hex>/``.
LEVELS_PREFIX = "levels-"
_LEVELS_SEGMENT = re.compile(re.escape(LEVELS_PREFIX) + r"[0-9a-f]{16}")


async def _image_store(session: AsyncSession, store: Any, user: AuthUser) -> tuple[m.Store, m.Representation]:
    """The caller's finished OME-Zarr image store without a pyramid, and its image."""
    row = await get_store(session, store, user, "ZARR")
    rep = await session.scalar(select(m.Representation).where(m.Representation.store_id == row.id))
    if not row.populated or rep is None or row.array_path != "0":
        raise Conflict(f"store {store} holds no finished OME-Zarr image to add levels to")
    if len(row.levels or []) > 1:
        raise Conflict(f"store {store} already has a pyramid of {len(row.levels or [])} levels")
    return row, rep


def _level_zero(row: m.Store) -> ArrayInfo:
    assert row.shape is not None and row.chunks is not None and row.dtype is not None
    info = ArrayInfo(
        key=f"{row.key}/0",
        shape=row.shape,
        chunks=row.chunks,
        shards=row.shards,
        dtype=row.dtype,
        dimension_names=row.dimension_names,
    )
    info.levels.append(info.level())
    return info


@strawberry.type
class PyramidMutation:
    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="A write grant for a fresh prefix inside a finished image's group, where a pyramid's "
        "levels are written before recordLevels lists them; with prefix (the last segment of an earlier "
        "grant's prefix), a renewed grant for that same prefix, so a long build outlives its grants."
    )
    async def request_levels_upload(
        self, info: Info[Any, Any], store: strawberry.ID, prefix: str | None = None
    ) -> t.Grant:
        ctx, user = begin_mutation(info)
        if prefix is not None and not _LEVELS_SEGMENT.fullmatch(prefix):
            raise BadUserInput(f"prefix must be a {LEVELS_PREFIX}<16 hex digits> segment, not {prefix!r}")
        async with ctx.read() as session:
            # A renewal is refused like a first request once the image has a pyramid.
            row, _ = await _image_store(session, store, user)
        key = f"{row.key}/{prefix or LEVELS_PREFIX + uuid.uuid4().hex[:16]}"
        await ctx.services.run_io(ctx.services.storage.prepare, key)
        data = await _issue_grant(ctx, user, key, write=True)
        async with ctx.services.transaction() as tx:
            _record_grant(tx.session, row.id, user, data)
        return _grant(row, data)

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Record the levels written under a requestLevelsUpload prefix as the image's pyramid and "
        "list them in its group's zarr.json (all at once: readers see no pyramid or all of it)."
    )
    async def record_levels(
        self, info: Info[Any, Any], store: strawberry.ID, levels: list[LevelInput]
    ) -> t.ZarrStore:
        ctx, user = begin_mutation(info)
        if not levels:
            raise BadUserInput("levels must name at least one level")
        prefixes = {level.path.split("/", 1)[0] for level in levels}
        if len(prefixes) != 1 or not next(iter(prefixes)).startswith(LEVELS_PREFIX):
            raise BadUserInput(
                f"levels must all lie under one {LEVELS_PREFIX}<id>/ prefix of requestLevelsUpload"
            )
        async with ctx.read() as session:
            row, _ = await _image_store(session, store, user)
        array = _level_zero(row)
        with_levels(array, row.key, [(v.path, v.array_metadata, v.scale) for v in levels])
        storage = ctx.services.storage
        missing = [
            v.path
            for v in levels
            if not await ctx.services.run_io(storage.exists, f"{row.key}/{v.path}/zarr.json")
        ]
        if missing:
            raise BadUserInput(f"levels {missing} have no zarr.json in the store: write them first")
        async with ctx.services.transaction() as tx:
            # Checked again under the write: of two builds at once, the second is refused here.
            row, rep = await _image_store(tx.session, store, user)
            row.levels = array.levels
            await tx.session.flush()
            await write_back(ctx, tx.session, rep, method=method_for_variety(rep.variety))
            tx.record(REP, "UPDATE", rep.id, rep.dataset_id, rep.creator_id)
        return t.ZarrStore.from_row(row)
