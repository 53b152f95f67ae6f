"""The strawberry input types (filters, pagination, create/update inputs)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pybase64
import strawberry
from strawberry.scalars import Base64
from strawberry.schema.types.scalar import DEFAULT_SCALAR_REGISTRY

from mikro.server._acquisition import AcquisitionInput
from mikro.server._input_plans import convert_by_plan
from mikro.server._types import JSON, BigInt, RepresentationVariety, RoiKind

__all__ = [
    "BASE64_SCALAR",
    "BaseFilter",
    "ChannelInput",
    "DatasetFilter",
    "DatasetInput",
    "DatasetUpdateInput",
    "ExperimentInput",
    "ExperimentUpdateInput",
    "FileFilter",
    "FileInput",
    "FileUpdateInput",
    "LevelInput",
    "MetricFilter",
    "MetricInput",
    "MetricUpdateInput",
    "OffsetPaginationInput",
    "PhysicalSizeInput",
    "RepresentationFilter",
    "RepresentationInput",
    "RepresentationUpdateInput",
    "RoiFilter",
    "RoiInput",
    "RoiUpdateInput",
    "SampleInput",
    "SampleUpdateInput",
    "StoreThumbnailInput",
    "TableFilter",
    "TableInput",
    "TableUpdateInput",
    "ThumbnailFilter",
    "ThumbnailInput",
    "ThumbnailUpdateInput",
]


_STRAWBERRY_BASE64 = DEFAULT_SCALAR_REGISTRY[Base64]


def _parse_base64(value: Any) -> bytes:
    """strawberry's parsing of Base64 (the stdlib's ``b64decode``, which skips characters outside the
    alphabet), ten times faster for the strictly valid base64 clients send: pybase64's SIMD decoder
    answers those (a thumbnail's ~90 kB took 0.19 ms, a tenth of the server's CPU per small image), and
    anything else goes strawberry's way, with its bytes or its error."""
    if type(value) is str:
        try:
            return pybase64.b64decode(value, validate=True)
        except ValueError:
            pass
    parsed: bytes = _STRAWBERRY_BASE64.parse_value(value)  # type: ignore[misc]
    return parsed


def _serialize_base64(value: bytes) -> str:
    return pybase64.b64encode(value).decode("ascii")


# strawberry's Base64 as the schema prints it (name, description, @specifiedBy), parsed and served by
# pybase64; it goes in the schema's scalar_map.
BASE64_SCALAR = strawberry.scalar(
    name=_STRAWBERRY_BASE64.name,
    description=_STRAWBERRY_BASE64.description,
    specified_by_url=_STRAWBERRY_BASE64.specified_by_url,
    serialize=_serialize_base64,
    parse_value=_parse_base64,
)


@strawberry.input
class OffsetPaginationInput:
    offset: int = 0
    limit: int = 100


@strawberry.input
class BaseFilter:
    ids: list[strawberry.ID] | None = None
    search: str | None = None
    tags: list[str] | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


@strawberry.input
class RepresentationFilter(BaseFilter):
    sample: strawberry.ID | None = None
    experiment: strawberry.ID | None = None
    dataset: strawberry.ID | None = None
    derived_from: strawberry.ID | None = None
    variety: RepresentationVariety | None = None
    source_fingerprint: str | None = None


@strawberry.input
class DatasetFilter(BaseFilter):
    parent: strawberry.ID | None = None


@strawberry.input
class RoiFilter(BaseFilter):
    representation: strawberry.ID | None = None
    kind: RoiKind | None = None


@strawberry.input
class MetricFilter(BaseFilter):
    representation: strawberry.ID | None = None
    roi: strawberry.ID | None = None
    key: str | None = None


@strawberry.input
class TableFilter(BaseFilter):
    origin: strawberry.ID | None = None


@strawberry.input
class ThumbnailFilter(BaseFilter):
    representation: strawberry.ID | None = None


@strawberry.input
class SampleInput:
    name: str
    description: str | None = None
    tags: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class SampleUpdateInput:
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None


@strawberry.input
class ExperimentInput:
    name: str
    description: str | None = None
    tags: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class ExperimentUpdateInput:
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None


@strawberry.input
class DatasetInput:
    name: str
    description: str | None = None
    parent: strawberry.ID | None = None
    tags: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class DatasetUpdateInput:
    name: str | None = None
    description: str | None = None
    parent: strawberry.ID | None = None
    tags: list[str] | None = None


@strawberry.input
class ChannelInput:
    name: str | None = None
    emission_wavelength: float | None = None
    excitation_wavelength: float | None = None
    color: str | None = None


@strawberry.input
class PhysicalSizeInput:
    x: float | None = None
    y: float | None = None
    z: float | None = None
    t: float | None = None


@strawberry.input(
    description="The image's thumbnail, sent with its registration: a PNG of at most 1 MiB and 4096 "
    "pixels a side (the server reads width and height from it); or, without png, its width and height "
    "only: the PNG is the object 0/thumbnail.png beside the level-0 array of the image's store, written "
    "there by the client or, for an image of one shard and no coarser level, made there by the server "
    "from the pixels when first read."
)
class StoreThumbnailInput:
    png: Base64 | None = None
    width: int | None = None
    height: int | None = None


@strawberry.input(
    description="Create an image from a zarr upload; shape, dims and dtype are read from the store, or "
    "from arrayMetadata (an upload not yet finished is finished here)."
)
class RepresentationInput:
    store: strawberry.ID
    name: str
    variety: RepresentationVariety = RepresentationVariety.VOXEL
    sample: strawberry.ID | None = None
    experiments: list[strawberry.ID] = strawberry.field(default_factory=list)
    dataset: strawberry.ID | None = None
    tags: list[str] = strawberry.field(default_factory=list)
    origins: list[strawberry.ID] = strawberry.field(default_factory=list)
    channels: list[ChannelInput] = strawberry.field(default_factory=list)
    physical_size: PhysicalSizeInput | None = None
    acquisition_date: dt.datetime | None = None
    thumbnail: StoreThumbnailInput | None = None
    array_metadata: str | None = strawberry.field(
        default=None,
        description="The zarr.json the client wrote for the array at 0/ (an OME-Zarr image): the server "
        "records shape, dtype and chunks from it instead of reading it from the store.",
    )
    source_fingerprint: str | None = None
    source_scene: int | None = None
    source_scene_name: str | None = None
    source_scene_count: int | None = None
    acquisition: AcquisitionInput | None = None
    original_file: strawberry.ID | None = strawberry.field(
        default=None, description="The File (yours) this image was made from."
    )
    levels: list[LevelInput] | None = strawberry.field(
        default=None,
        description="The pyramid's coarser levels (1, 2, ...) the client wrote beside level 0, with their "
        "zarr.json; recorded with the store (requires arrayMetadata).",
    )


@strawberry.input(description="One coarser resolution level of an uploaded image.")
class LevelInput:
    path: str
    array_metadata: str
    scale: list[float] = strawberry.field(
        description="The downsampling factor per dim relative to level 0 (>= 1)."
    )


@strawberry.input
class RepresentationUpdateInput:
    name: str | None = None
    variety: RepresentationVariety | None = None
    sample: strawberry.ID | None = None
    experiments: list[strawberry.ID] | None = None
    dataset: strawberry.ID | None = None
    tags: list[str] | None = None
    channels: list[ChannelInput] | None = None
    physical_size: PhysicalSizeInput | None = None
    acquisition_date: dt.datetime | None = None


@strawberry.input
class RoiInput:
    representation: strawberry.ID
    kind: RoiKind
    vectors: list[list[float]]
    label: str | None = None
    tags: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class RoiUpdateInput:
    kind: RoiKind | None = None
    vectors: list[list[float]] | None = None
    label: str | None = None
    tags: list[str] | None = None


@strawberry.input
class MetricInput:
    representation: strawberry.ID
    roi: strawberry.ID | None = None
    key: str
    value: JSON


@strawberry.input
class MetricUpdateInput:
    key: str | None = None
    value: JSON | None = None


@strawberry.input
class TableInput:
    store: strawberry.ID
    name: str
    origins: list[strawberry.ID] = strawberry.field(default_factory=list)
    tags: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class TableUpdateInput:
    name: str | None = None
    origins: list[strawberry.ID] | None = None
    tags: list[str] | None = None


@strawberry.input
class ThumbnailInput:
    representation: strawberry.ID
    png: Base64


@strawberry.input
class ThumbnailUpdateInput:
    png: Base64


@strawberry.input
class FileFilter(BaseFilter):
    representation: strawberry.ID | None = strawberry.field(
        default=None, description="Files attached to this image, or its original."
    )
    sample: strawberry.ID | None = None
    experiment: strawberry.ID | None = None
    dataset: strawberry.ID | None = None
    content_hash: str | None = None
    content_hashes: list[str] | None = strawberry.field(
        default=None,
        description="Your own files (also for an admin) with any of these content hashes (at most 2000): "
        "an ingest's originals, one request per batch of files.",
    )


@strawberry.input(
    description="Record a file whose bytes are in place at `<key>/file` of a MEDIA store from "
    "requestUpload; the server checks the object's size, the client vouches for the hash."
)
class FileInput:
    store: strawberry.ID
    name: str
    size: BigInt
    content_hash: str
    media_type: str = "application/octet-stream"
    representations: list[strawberry.ID] = strawberry.field(default_factory=list)
    samples: list[strawberry.ID] = strawberry.field(default_factory=list)
    experiments: list[strawberry.ID] = strawberry.field(default_factory=list)
    datasets: list[strawberry.ID] = strawberry.field(default_factory=list)
    tags: list[str] = strawberry.field(default_factory=list)


@strawberry.input(description="Null fields are left as they are; a list given replaces the links.")
class FileUpdateInput:
    name: str | None = None
    media_type: str | None = None
    representations: list[strawberry.ID] | None = None
    samples: list[strawberry.ID] | None = None
    experiments: list[strawberry.ID] | None = None
    datasets: list[strawberry.ID] | None = None
    tags: list[str] | None = None


# The inputs of the batch mutations, converted by a plan (see _input_plans): an ingest records its
# originals 64 at a time, and strawberry's own conversion of them was a tenth of the server's CPU.
for _batched in (RepresentationInput, FileInput):
    _batched.__strawberry_definition__.from_input = convert_by_plan  # type: ignore[union-attr]
