"""Models of the schema's object types (mikro/schema.graphql), checked against it by a contract test.

Relations are ``None`` when the operation that produced the model did not select them: the typed
operations select every relation of the requested object one level deep (with the related objects'
own fields), so ``rep.sample.name`` and ``rep.origins[0].id`` need no further request, while
``rep.sample.representations`` is ``None`` (fetch the sample for those).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Base64Bytes, Field

from mikro._exceptions import NotConnectedError
from mikro.api._acquisition import Acquisition
from mikro.api._base import MikroModel
from mikro.api._enums import RepresentationVariety, RoiKind

__all__ = [
    "ROI",
    "Channel",
    "Dataset",
    "Experiment",
    "File",
    "MediaStore",
    "Metric",
    "ParquetStore",
    "PhysicalSize",
    "Representation",
    "Sample",
    "Table",
    "TableColumn",
    "Thumbnail",
    "User",
    "ZarrLevel",
    "ZarrStore",
]


def _session_of(model: MikroModel, what: str) -> Any:
    if model._session is None:
        raise NotConnectedError(
            f"this {type(model).__name__} was not loaded through a mikro session, so {what} cannot be "
            "opened; fetch it with `await m.get_...` inside `async with mikro.connect() as m:`"
        )
    return model._session


class User(MikroModel):
    id: str
    username: str
    is_admin: bool


class ZarrLevel(MikroModel):
    """One resolution level of a stored image: its array's path, shape, chunking, and its downsampling
    factor per dim relative to level 0 (``scale``)."""

    path: str
    shape: list[int]
    chunks: list[int]
    shards: list[int] | None = None
    scale: list[float]


class ZarrStore(MikroModel):
    """Where an image's pixels are: ``path`` is the OME-Zarr image group (what napari, bioio or
    ome-zarr-py open), ``array_path`` its level-0 array inside it, ``levels`` every resolution level."""

    id: str
    bucket: str
    key: str
    path: str
    shape: list[int] | None = None
    chunks: list[int] | None = None
    shards: list[int] | None = None
    dtype: str | None = None
    dimension_names: list[str] | None = None
    version: str
    populated: bool
    array_path: str | None = None
    levels: list[ZarrLevel] = []


class ParquetStore(MikroModel):
    id: str
    bucket: str
    key: str
    path: str


class Channel(MikroModel):
    name: str | None = None
    emission_wavelength: float | None = None
    excitation_wavelength: float | None = None
    color: str | None = None


class PhysicalSize(MikroModel):
    """Size of one pixel per dimension (micrometres for x/y/z, seconds for t)."""

    x: float | None = None
    y: float | None = None
    z: float | None = None
    t: float | None = None


class Representation(MikroModel):
    """One image: metadata here, pixels behind :attr:`data`."""

    id: str
    name: str
    shape: list[int]
    dims: list[str]
    dtype: str
    variety: RepresentationVariety
    store: ZarrStore
    sample: Sample | None = None
    experiments: list[Experiment] | None = None
    dataset: Dataset | None = None
    tags: list[str] = []
    origins: list[Representation] | None = None
    derived: list[Representation] | None = None
    rois: list[ROI] | None = None
    metrics: list[Metric] | None = None
    thumbnails: list[Thumbnail] | None = None
    channels: list[Channel] = []
    physical_size: PhysicalSize | None = None
    acquisition_date: dt.datetime | None = None
    created_at: dt.datetime
    creator: User
    source_fingerprint: str | None = None
    source_scene: int | None = None
    source_scene_name: str | None = None
    source_scene_count: int | None = None
    acquisition: Acquisition | None = None
    original_file: File | None = None

    @property
    def data(self) -> Any:
        """The pixels as a lazy ``xarray.DataArray`` (dask-backed); opening it does no network I/O."""
        return _session_of(self, "its data").open_representation_data(self)

    def data_at(self, level: int) -> Any:
        """Pyramid level ``level`` (0 = `data`) as a lazy ``xarray.DataArray`` with physical coordinates."""
        return _session_of(self, "its data").open_representation_data(self, level)

    @property
    def levels(self) -> list[Any]:
        """Every resolution level, full resolution first, each a lazy ``xarray.DataArray`` (no I/O here)."""
        return [self.data_at(k) for k in range(max(1, len(self.store.levels)))]


class Sample(MikroModel):
    id: str
    name: str
    description: str | None = None
    tags: list[str] = []
    representations: list[Representation] | None = None
    created_at: dt.datetime
    creator: User


class Experiment(MikroModel):
    id: str
    name: str
    description: str | None = None
    tags: list[str] = []
    representations: list[Representation] | None = None
    created_at: dt.datetime
    creator: User


class Dataset(MikroModel):
    id: str
    name: str
    description: str | None = None
    tags: list[str] = []
    parent: Dataset | None = None
    children: list[Dataset] | None = None
    representations: list[Representation] | None = None
    created_at: dt.datetime
    creator: User


class ROI(MikroModel):
    """A region of interest; each vector is one 5-D point in (c, t, z, y, x) order."""

    id: str
    representation: Representation | None = None
    kind: RoiKind
    vectors: list[list[float]]
    label: str | None = None
    tags: list[str] = []
    created_at: dt.datetime
    creator: User


class Metric(MikroModel):
    """A key/value measurement attached to an image, optionally to one of its ROIs."""

    id: str
    key: str
    value: Any
    representation: Representation | None = None
    roi: ROI | None = None
    created_at: dt.datetime
    creator: User


class TableColumn(MikroModel):
    name: str
    type: str


class Table(MikroModel):
    """A parquet file on the object store; :attr:`data` reads it."""

    id: str
    name: str
    store: ParquetStore
    columns: list[TableColumn] = []
    origins: list[Representation] | None = None
    tags: list[str] = []
    created_at: dt.datetime
    creator: User

    @property
    def data(self) -> Any:
        """The table's contents (see the data plane's ``open_table_data``); no network I/O here."""
        return _session_of(self, "its data").open_table_data(self)


class Thumbnail(MikroModel):
    """A small PNG of an image, kept by the server with the image's metadata.

    ``png`` is ``None`` unless asked for: representations list their thumbnails without it. Read a
    thumbnail's PNG with ``await m.thumbnail_png(thumbnail)``.
    """

    id: str
    representation: Representation | None = None
    png: Base64Bytes | None = Field(default=None, repr=False)
    width: int
    height: int
    created_at: dt.datetime
    creator: User


class MediaStore(MikroModel):
    """Where a file's bytes are: one object, ``<key>/file``."""

    id: str
    bucket: str
    key: str
    path: str


class File(MikroModel):
    """A file kept as it is: an image's original, or an attachment (PDF, CSV, protocol).

    Read it with ``await m.download_file(file, path)`` or ``async with m.open_file(file) as chunks:``.
    ``content_hash`` is ``"sha256:<hex>"`` of its bytes; downloads check it.
    """

    id: str
    name: str
    size: int
    content_hash: str
    media_type: str
    store: MediaStore
    tags: list[str] = []
    representations: list[Representation] | None = None
    samples: list[Sample] | None = None
    experiments: list[Experiment] | None = None
    datasets: list[Dataset] | None = None
    created_at: dt.datetime
    creator: User


for _model in (Representation, Sample, Experiment, Dataset, ROI, Metric, Table, Thumbnail, File):
    _model.model_rebuild()
