"""``await m.build_pyramid(rep)``: add a pyramid to an image stored without one.

Level 0 is read back block by block (one shard region at a time, never whole) and the coarser levels
are built from those blocks exactly as at upload (`mikro.datalayer._pyramid`), written under a fresh
prefix the server grants (and renews) inside the image's group (``requestLevelsUpload``), then
recorded at once (``recordLevels``: the store's levels and its group ``zarr.json`` change in one
transaction). Readers see the image without a pyramid or with all of it; a build that fails or is
cancelled deletes what it wrote and changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import anyio

from mikro._exceptions import ValidationError
from mikro.api._grant import Grant
from mikro.api._models import Representation, ZarrStore
from mikro.api._operations import IdLike, _id
from mikro.datalayer import (
    GrantedStore,
    ProgressCallback,
    PyramidOption,
    choose_layout,
    method_for_variety,
    write_image,
)
from mikro.datalayer._pyramid import plan_levels
from mikro.datalayer._validate import PreparedImage

if TYPE_CHECKING:
    import anyio.abc

__all__ = ["PyramidMixin"]

log = logging.getLogger(__name__)

#: How long deleting a failed build's objects may take (it runs shielded from cancellation).
CLEANUP_SECONDS = 10.0


class PyramidMixin:
    """The pyramid methods of :class:`mikro.Mikro`."""

    async def build_pyramid(
        self,
        representation: IdLike,
        *,
        pyramid: PyramidOption = "auto",
        progress: ProgressCallback | None = None,
    ) -> Representation:
        """Add pyramid levels to an image stored without them; returns the image with its levels.

        ``pyramid`` is as for ``create_representation`` (``"auto"``: levels until the coarsest fits in
        1024 pixels; an int: that many levels). An image that needs none is returned unchanged. Level 0
        is streamed from the store (bounded memory); ``progress(done, total)`` counts its bytes read.
        """
        session = cast("Any", self)
        rep: Representation = await session.get_representation(_id(representation))
        if len(rep.store.levels) > 1:
            raise ValidationError(
                f"representation {rep.id} already has a pyramid of {len(rep.store.levels)} levels"
            )
        level0 = session.open_representation_data(rep)
        sizes = {k: v for k, v in (rep.physical_size.model_dump() if rep.physical_size else {}).items() if v}
        image = PreparedImage(array=level0.data, dims=tuple(level0.dims), pixel_size=sizes)
        store_info = rep.store
        assert store_info.shards is not None
        base = choose_layout(image.shape, image.dtype, image.dims)
        if len(plan_levels(base, sizes, pyramid)[0]) == 1:
            return rep
        grant: Grant = await session._one("RequestLevelsUpload", Grant, {"store": store_info.id})
        storage_grant = grant.to_storage_grant()
        prefix = grant.prefix.rstrip("/").rsplit("/", 1)[-1]
        # Renewed like an upload's grant (requestLevelsUpload for the same prefix), so a build may
        # outlive the grant's lifetime.
        store = GrantedStore(session._levels_grant_provider(store_info.id, prefix), grant=storage_grant)
        result = await write_image(
            store,
            image,
            limiter=session.thread_limiter,
            progress=progress,
            pyramid=pyramid,
            method=method_for_variety(rep.variety),
            levels_only=True,
        )
        levels = [
            {"path": f"{prefix}/{layout.path}", "arrayMetadata": doc.decode(), "scale": list(factors)}
            for layout, doc, factors in zip(
                result.levels[1:], result.level_metadata[1:], result.factors[1:], strict=True
            )
        ]
        try:
            # Shielded: once sent, whether the server recorded the levels must be known.
            with anyio.CancelScope(shield=True):
                await session._one("RecordLevels", ZarrStore, {"store": store_info.id, "levels": levels})
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                try:
                    await anyio.to_thread.run_sync(store.delete, list(result.keys), abandon_on_cancel=True)
                except Exception as exc:
                    log.warning("could not delete the levels of a failed pyramid build: %s", exc)
            raise
        updated: Representation = await session.get_representation(rep.id)
        return updated
