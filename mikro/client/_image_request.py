"""One image to upload, validated before anything is sent, and what its registration carries.

``create_representation`` and ``create_representations`` both validate with :func:`image_request` and
upload with the session's ``_create_prepared``; they differ only in the :class:`Registrar` that records
the finished uploads (group commit of concurrent calls, or one all-or-nothing batch).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import pybase64

from mikro._exceptions import ValidationError
from mikro.api._arguments import choice
from mikro.api._enums import RepresentationVariety
from mikro.datalayer import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    DEFAULT_MAX_BYTES,
    Compression,
    GrantedStore,
    ImageLayout,
    PreparedImage,
    ProgressCallback,
    PyramidOption,
    Thumbnail,
    WriteResult,
    method_for_variety,
    prepare_image,
    small_layout,
    write_image,
    write_small_image,
)

if TYPE_CHECKING:
    from mikro.api import Acquisition, Representation

__all__ = ["ImageRequest", "Registrar", "image_request"]


class Registrar(Protocol):
    """Records finished uploads on the server."""

    @property
    def may_leave_rows(self) -> bool:
        """Whether a failed ``register`` may still have committed the row (its answer was lost)."""

    async def register(self, input: Mapping[str, Any]) -> Representation: ...


@dataclass(frozen=True)
class ImageRequest:
    image: PreparedImage
    name: str
    sample: Any
    experiments: list[Any]
    dataset: Any
    tags: list[str]
    origins: list[Any]
    channels: list[Any]
    variety: str
    acquisition_date: dt.datetime | None
    progress: ProgressCallback | None
    compression: Compression
    thumbnail: bool
    original_file: Any = None
    #: The channel names written into the store's ``omero`` block (None: taken from the image).
    write_channel_names: list[str] | None = None
    #: The channels' colours for the ``omero`` block (None where not given: a default colour).
    write_channel_colours: list[str | None] | None = None
    acquisition: dict[str, Any] | None = None
    source_fingerprint: str | None = None
    source_scene: int | None = None
    source_scene_name: str | None = None
    source_scene_count: int | None = None
    limiter: anyio.CapacityLimiter | None = None
    pyramid: PyramidOption = "auto"

    async def write(self, store: GrantedStore, limiter: anyio.CapacityLimiter) -> WriteResult:
        """Write the image's objects to ``store`` (the session's upload, or a cluster worker's)."""
        return await write_image(
            store,
            self.image,
            name=self.name,
            limiter=self.limiter if self.limiter is not None else limiter,
            compression=self.compression,
            progress=self.progress,
            thumbnail=self.thumbnail,
            pyramid=self.pyramid,
            method=method_for_variety(self.variety),
            channel_names=self.write_channel_names,
            channel_colours=self.write_channel_colours,
            rgb=self.variety == "RGB",
        )

    def write_small(self, store: GrantedStore, layout: ImageLayout) -> WriteResult:
        """Write a small image (``layout`` from `small_layout`) in this thread: for a worker thread."""
        return write_small_image(
            store,
            self.image,
            layout,
            name=self.name,
            thumbnail=self.thumbnail,
            channel_names=self.write_channel_names,
            channel_colours=self.write_channel_colours,
            rgb=self.variety == "RGB",
        )

    def layout_if_small(self) -> ImageLayout | None:
        """The layout `write_small` writes, if the image is small enough to be written whole (else None)."""
        if self.limiter is not None:
            return None
        return small_layout(self.image, compression=self.compression, pyramid=self.pyramid)

    def registration(self, store_id: str, result: WriteResult) -> dict[str, Any]:
        """The RepresentationInput that records the upload (its thumbnail and metadata travel with it)."""
        made = result.thumbnail
        values = {
            "store": store_id,
            "name": self.name,
            "variety": self.variety,
            "sample": self.sample,
            "experiments": self.experiments,
            "dataset": self.dataset,
            "tags": self.tags,
            "origins": self.origins,
            "channels": self.channels,
            "physical_size": dict(self.image.pixel_size) or None,
            "acquisition_date": self.acquisition_date,
            "thumbnail": _thumbnail_input(made),
            "array_metadata": result.array_metadata.decode(),
            "original_file": self.original_file,
            "source_fingerprint": self.source_fingerprint,
            "source_scene": self.source_scene,
            "source_scene_name": self.source_scene_name,
            "source_scene_count": self.source_scene_count,
            "acquisition": self.acquisition,
            "levels": [
                {"path": lay.path, "array_metadata": doc.decode(), "scale": list(factors)}
                for lay, doc, factors in zip(
                    result.levels[1:], result.level_metadata[1:], result.factors[1:], strict=True
                )
            ]
            or None,
        }
        # Empty lists are the server's defaults: each field sent costs it a coercion per image. None is
        # "not given", dropped here rather than looked at again by the request's input conversion.
        # (An identity and type test: `value != []` would run a pydantic model's __eq__ per field.)
        return {
            key: value
            for key, value in values.items()
            if value is not None and not (type(value) is list and not value)
        }


def _thumbnail_input(made: Thumbnail | None) -> dict[str, Any] | None:
    if made is None:
        return None
    if made.key is not None or made.png is None:
        # Beside the image, written there or made there by the server when first read (see
        # write_small_image): the server reads it from there.
        return {"width": made.width, "height": made.height}
    return {"png": pybase64.b64encode(made.png).decode("ascii")}


def image_request(
    data: Any,
    *,
    name: str,
    dims: str | Sequence[str] | None = None,
    sample: Any = None,
    experiments: Iterable[Any] = (),
    dataset: Any = None,
    tags: Iterable[str] = (),
    origins: Iterable[Any] = (),
    channels: Sequence[Any] | None = None,
    pixel_size: Any = None,
    variety: str = "VOXEL",
    acquisition_date: dt.datetime | None = None,
    progress: ProgressCallback | None = None,
    compression: Compression = DEFAULT_COMPRESSION,
    max_bytes: int = DEFAULT_MAX_BYTES,
    thumbnail: bool = True,
    original_file: Any = None,
    acquisition: Acquisition | Mapping[str, Any] | None = None,
    source_fingerprint: str | None = None,
    source_scene: int | None = None,
    source_scene_name: str | None = None,
    source_scene_count: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    pyramid: PyramidOption = "auto",
) -> ImageRequest:
    """``create_representation``'s arguments, checked (``ValidationError``) and the image prepared."""
    if compression not in COMPRESSIONS:
        raise ValidationError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
    image = prepare_image(data, dims=dims, pixel_size=pixel_size, max_bytes=max_bytes)
    n_channels = image.shape[image.dims.index("c")] if "c" in image.dims else 1
    if channels is not None and len(channels) != n_channels:
        raise ValidationError(f"{len(channels)} channels given for an image with {n_channels}")
    if channels is not None:
        channel_inputs = list(channels)
    else:
        channel_inputs = [{"name": n} for n in image.channel_names] if image.channel_names else []
    return ImageRequest(
        image=image,
        name=name,
        sample=sample,
        experiments=list(experiments),
        dataset=dataset,
        tags=list(tags),
        origins=list(origins),
        channels=channel_inputs,
        variety=str(choice(RepresentationVariety, variety, "variety")),
        acquisition_date=acquisition_date,
        progress=progress,
        compression=compression,
        thumbnail=thumbnail,
        original_file=original_file,
        write_channel_names=_channel_names(channels),
        write_channel_colours=_channel_field(channels, "color"),
        acquisition=_acquisition_input(acquisition),
        source_fingerprint=source_fingerprint,
        source_scene=source_scene,
        source_scene_name=source_scene_name,
        source_scene_count=source_scene_count,
        limiter=limiter,
        pyramid=pyramid,
    )


def _acquisition_input(value: Acquisition | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    from mikro.api import Acquisition

    model = value if isinstance(value, Acquisition) else Acquisition.model_validate(value)
    # Dumped by alias: the schema's names (lensNA) are not plain camelCase of the fields.
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped or None


def _channel_field(channels: Sequence[Any] | None, field: str) -> list[Any] | None:
    if channels is None:
        return None
    return [c.get(field) if isinstance(c, Mapping) else getattr(c, field, None) for c in channels]


def _channel_names(channels: Sequence[Any] | None) -> list[str] | None:
    names = _channel_field(channels, "name")
    return None if names is None else [str(n) if n else "" for n in names]
