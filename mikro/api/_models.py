"""Models of the schema's object types (mikro/schema.graphql), checked against it by a contract test.

The typed operations select every relation of the requested object one level deep (with the related
objects' own fields), so ``rep.sample.name`` and ``rep.origins[0].id`` need no further request. A
relation that the call did not fetch is not ``None``: reading it raises :class:`mikro.NotFetchedError`
naming the call that fetches it (``rep.sample.representations`` -> ``m.get_sample(id)``). ``None``
means the server said there is none.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
from typing import Any, ClassVar

from pydantic import Base64Bytes, Field
from pydantic.alias_generators import to_snake

from mikro._exceptions import NotConnectedError, NotFetchedError
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


def _session_of(model: _Object, what: str) -> Any:
    if model._session is None:
        raise NotConnectedError(
            f"this {type(model).__name__} was not loaded through a mikro session, so {what} cannot be "
            "opened; fetch it with `await m.get_...` inside `async with mikro.connect() as m:`"
        )
    return model._session


class _Object(MikroModel):
    """A server object: a field the server did not send (not selected by the call) is not "absent".

    Reading such a field (its default is None) raises :class:`mikro.NotFetchedError` instead of
    answering None; only the None path pays for the check.
    """

    #: Fields fetched by something other than ``get_<type>`` (name -> the call).
    _FETCHED_BY: ClassVar[dict[str, str]] = {}

    # Only server objects know their session (value objects such as channels or stores need none).
    # It lives in pydantic's private-values slot, written here rather than declared as a PrivateAttr:
    # a declared one makes pydantic initialise its default (a deep copy) through two wrapped
    # post-init hooks and a guarded setattr for every model, more than half of the client's CPU in
    # list_representations(100) (issue 17).

    def model_post_init(self, context: Any, /) -> None:
        # The validation context carries the session that fetched the data, so that lazy accessors
        # (``rep.data``) of this model and of the models nested in it know where to go.
        session = context.get("session") if isinstance(context, dict) else None
        # Written either way: model_construct leaves the slot unset for models with a post-init hook.
        object.__setattr__(self, "__pydantic_private__", None if session is None else {"_session": session})

    @property
    def _session(self) -> Any:
        private = object.__getattribute__(self, "__pydantic_private__")
        return None if private is None else private.get("_session")

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if value is None:
            cls = type(self)
            if name in _optional_fields(cls) and name not in object.__getattribute__(
                self, "__pydantic_fields_set__"
            ):
                raise NotFetchedError(_not_fetched(cls, name, object.__getattribute__(self, "__dict__")))
        return value


@functools.cache
def _optional_fields(cls: type[_Object]) -> frozenset[str]:
    return frozenset(name for name, field in cls.model_fields.items() if field.default is None)


def _not_fetched(cls: type[_Object], name: str, fields: dict[str, Any]) -> str:
    ident = fields.get("id")
    call = cls._FETCHED_BY.get(name) or f"m.get_{to_snake(cls.__name__).replace('_', '').lower()}({ident!r})"
    return (
        f"{cls.__name__}.{name} was not fetched by the call that made this {cls.__name__} "
        f"(it is not known to be empty): `await {call}` fetches it (blocking in mikro.sync)"
    )


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


class Representation(_Object):
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

    def _extra_html_rows(self) -> list[str]:
        # Jupyter shows the image itself: its first thumbnail, fetched with a blocking request where
        # blocking is allowed (the sync facade; never on the session's own event loop).
        thumbnails = self.__dict__.get("thumbnails")
        if not thumbnails or self._session is None:
            return []
        if self._session._on_loop_thread():
            cell = html.escape("await m.thumbnail_png(rep.thumbnails[0])")
        else:
            png = self._session._blocking_thumbnail_png(thumbnails[0].id)
            cell = f"<img src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'/>"
        return [f"<tr><th style='text-align:left'>thumbnail</th><td>{cell}</td></tr>"]


class Sample(_Object):
    id: str
    name: str
    description: str | None = None
    tags: list[str] = []
    representations: list[Representation] | None = None
    created_at: dt.datetime
    creator: User


class Experiment(_Object):
    id: str
    name: str
    description: str | None = None
    tags: list[str] = []
    representations: list[Representation] | None = None
    created_at: dt.datetime
    creator: User


class Dataset(_Object):
    id: str
    name: str
    description: str | None = None
    tags: list[str] = []
    parent: Dataset | None = None
    children: list[Dataset] | None = None
    representations: list[Representation] | None = None
    created_at: dt.datetime
    creator: User


class ROI(_Object):
    """A region of interest; each vector is one 5-D point in (c, t, z, y, x) order."""

    id: str
    representation: Representation | None = None
    kind: RoiKind
    vectors: list[list[float]]
    label: str | None = None
    tags: list[str] = []
    created_at: dt.datetime
    creator: User


class Metric(_Object):
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


class Table(_Object):
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


class Thumbnail(_Object):
    """A small PNG of an image, kept by the server with the image's metadata.

    ``png`` is ``None`` unless asked for: representations list their thumbnails without it. Read a
    thumbnail's PNG with ``await m.thumbnail_png(thumbnail)``.
    """

    _FETCHED_BY: ClassVar[dict[str, str]] = {"png": "m.thumbnail_png(thumbnail)"}

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


class File(_Object):
    """A file kept as it is: an image's original, or an attachment (PDF, CSV, protocol).

    Read it with ``await m.download_file(file, path)`` or ``async with m.open_file(file) as chunks:``.
    ``content_hash`` is ``"blake3:<hex>"`` of its bytes (``"sha256:<hex>"`` for files stored before
    BLAKE3); downloads check it.
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
