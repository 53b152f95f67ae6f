"""One image to upload, validated before anything is sent, and what its registration carries.

``create_representation`` and ``create_representations`` both validate with :func:`image_request` and
upload with the session's ``_create_prepared``; they differ only in the :class:`Registrar` that records
the finished uploads (group commit of concurrent calls, or one all-or-nothing batch).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mikro._exceptions import ValidationError
from mikro.datalayer import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    DEFAULT_MAX_BYTES,
    Compression,
    PreparedImage,
    ProgressCallback,
    WriteResult,
    prepare_image,
)

if TYPE_CHECKING:
    from mikro.api import Representation

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

    def registration(self, store_id: str, result: WriteResult) -> dict[str, Any]:
        """The RepresentationInput that records the upload (its thumbnail and metadata travel with it)."""
        made = result.thumbnail
        return {
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
            "thumbnail": None if made is None else {"png": base64.b64encode(made.png).decode("ascii")},
            "array_metadata": result.array_metadata.decode(),
            "original_file": self.original_file,
        }


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
        variety=str(variety),
        acquisition_date=acquisition_date,
        progress=progress,
        compression=compression,
        thumbnail=thumbnail,
        original_file=original_file,
    )
