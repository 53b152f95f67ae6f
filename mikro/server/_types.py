"""The strawberry output types and enums; they print to ``mikro/schema.graphql``."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, NewType, TypeVar

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import Base64
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server._context import context_of
from mikro.server._errors import NotFound

T = TypeVar("T")

__all__ = [
    "JSON",
    "JSON_SCALAR",
    "ROI",
    "Channel",
    "Credentials",
    "Dataset",
    "EventKind",
    "Experiment",
    "Grant",
    "Metric",
    "ParquetStore",
    "PhysicalSize",
    "Representation",
    "RepresentationEvent",
    "RepresentationVariety",
    "RoiEvent",
    "RoiKind",
    "Sample",
    "StoreKind",
    "Table",
    "TableColumn",
    "Thumbnail",
    "UploadKind",
    "User",
    "ZarrStore",
]


# Its GraphQL definition (JSON_SCALAR) goes in the schema's scalar_map; strawberry's own JSON scalar
# prints a different description and @specifiedBy than schema.graphql.
JSON = NewType("JSON", object)


def _identity(value: Any) -> Any:
    return value


JSON_SCALAR = strawberry.scalar(
    name="JSON",
    description="The `JSON` scalar type represents JSON values as specified by "
    "[ECMA-404](https://ecma-international.org/wp-content/uploads/ECMA-404_2nd_edition_june_2017.pdf).",
    serialize=_identity,
    parse_value=_identity,
)


@strawberry.enum
class RepresentationVariety(enum.Enum):
    VOXEL = "VOXEL"
    MASK = "MASK"
    RGB = "RGB"
    LABEL = "LABEL"
    UNKNOWN = "UNKNOWN"


@strawberry.enum
class RoiKind(enum.Enum):
    POINT = "POINT"
    LINE = "LINE"
    PATH = "PATH"
    RECTANGLE = "RECTANGLE"
    POLYGON = "POLYGON"
    ELLIPSE = "ELLIPSE"


@strawberry.enum
class StoreKind(enum.Enum):
    FILE = "FILE"
    S3 = "S3"


@strawberry.enum
class UploadKind(enum.Enum):
    ZARR = "ZARR"
    PARQUET = "PARQUET"
    MEDIA = "MEDIA"


@strawberry.enum(
    description="GAP: events were lost (the replay log no longer reaches back to the requested cursor)."
)
class EventKind(enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    GAP = "GAP"


async def _related(info: Info[Any, Any], loader: DataLoader[int, list[Any]], key: int) -> list[Any]:
    """Related objects the caller may see (relations only ever link one user's objects, but admins
    can link across users), and that still exist (see ``present``)."""
    user = context_of(info).require_user()
    items = await loader.load(key)
    return await present(info, [item for item in items if user.can_see(item._creator_id)])


async def _required(loader: DataLoader[int, Any], key: int, what: str) -> Any:
    """A related row an object cannot be shown without; gone only if deleted while this request ran."""
    row = await loader.load(key)
    if row is None:
        raise NotFound(f"its {what} {key} was deleted while this request ran")
    return row


async def _optional(info: Info[Any, Any], loader: DataLoader[int, T | None], key: int | None) -> T | None:
    """A single related object, or None: unset, deleted, or another user's (an admin may link across
    users; the other user's object is not shown to this one, as in the lists)."""
    if key is None:
        return None
    item = await loader.load(key)
    if item is None or not context_of(info).require_user().can_see(getattr(item, "_creator_id", -1)):
        return None
    return item


async def _creator(info: Info[Any, Any], creator_id: int) -> User:
    user = await context_of(info).loaders.user.load(creator_id)
    assert user is not None
    return user


@strawberry.type
class User:
    id: strawberry.ID
    username: str
    is_admin: bool

    @classmethod
    def from_row(cls, row: m.User) -> User:
        return cls(id=strawberry.ID(str(row.id)), username=row.username, is_admin=row.is_admin)


@strawberry.type
class ZarrStore:
    id: strawberry.ID
    bucket: str
    key: str
    path: str
    shape: list[int] | None
    chunks: list[int] | None
    shards: list[int] | None
    dtype: str | None
    dimension_names: list[str] | None
    version: str
    populated: bool
    _creator_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: m.Store) -> ZarrStore:
        return cls(
            id=strawberry.ID(str(row.id)),
            bucket=row.bucket,
            key=row.key,
            path=row.path,
            shape=row.shape,
            chunks=row.chunks,
            shards=row.shards,
            dtype=row.dtype,
            dimension_names=row.dimension_names,
            version=row.version,
            populated=row.populated,
            _creator_id=row.creator_id,
        )


@strawberry.type
class ParquetStore:
    id: strawberry.ID
    bucket: str
    key: str
    path: str

    @classmethod
    def from_row(cls, row: m.Store) -> ParquetStore:
        return cls(id=strawberry.ID(str(row.id)), bucket=row.bucket, key=row.key, path=row.path)


@strawberry.type
class Channel:
    name: str | None = None
    emission_wavelength: float | None = None
    excitation_wavelength: float | None = None
    color: str | None = None


@strawberry.type(
    description="Physical size of one pixel along each dimension (micrometres for x/y/z, seconds for t)."
)
class PhysicalSize:
    x: float | None = None
    y: float | None = None
    z: float | None = None
    t: float | None = None


@strawberry.type
class Representation:
    id: strawberry.ID
    name: str
    shape: list[int]
    dims: list[str]
    dtype: str
    variety: RepresentationVariety
    tags: list[str]
    channels: list[Channel]
    physical_size: PhysicalSize | None
    acquisition_date: dt.datetime | None
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]
    _store_id: strawberry.Private[int]
    _sample_id: strawberry.Private[int | None]
    _dataset_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: m.Representation) -> Representation:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            shape=list(row.shape),
            dims=list(row.dims),
            dtype=row.dtype,
            variety=RepresentationVariety(row.variety),
            tags=list(row.tags),
            channels=[Channel(**c) for c in row.channels],
            physical_size=PhysicalSize(**row.physical_size) if row.physical_size is not None else None,
            acquisition_date=row.acquisition_date,
            created_at=row.created_at,
            _creator_id=row.creator_id,
            _store_id=row.store_id,
            _sample_id=row.sample_id,
            _dataset_id=row.dataset_id,
        )

    @strawberry.field
    async def store(self, info: Info[Any, Any]) -> ZarrStore:
        row = await _required(context_of(info).loaders.store, self._store_id, "store")
        return ZarrStore.from_row(row)

    @strawberry.field
    async def sample(self, info: Info[Any, Any]) -> Sample | None:
        return await _optional(info, context_of(info).loaders.sample, self._sample_id)

    @strawberry.field
    async def dataset(self, info: Info[Any, Any]) -> Dataset | None:
        return await _optional(info, context_of(info).loaders.dataset, self._dataset_id)

    @strawberry.field
    async def experiments(self, info: Info[Any, Any]) -> list[Experiment]:
        return await _related(info, context_of(info).loaders.experiments_of_representation, int(self.id))

    @strawberry.field
    async def origins(self, info: Info[Any, Any]) -> list[Representation]:
        return await _related(info, context_of(info).loaders.origins_of_representation, int(self.id))

    @strawberry.field
    async def derived(self, info: Info[Any, Any]) -> list[Representation]:
        return await _related(info, context_of(info).loaders.derived_of_representation, int(self.id))

    @strawberry.field
    async def rois(self, info: Info[Any, Any]) -> list[ROI]:
        return await _related(info, context_of(info).loaders.rois_of_representation, int(self.id))

    @strawberry.field
    async def metrics(self, info: Info[Any, Any]) -> list[Metric]:
        return await _related(info, context_of(info).loaders.metrics_of_representation, int(self.id))

    @strawberry.field
    async def thumbnails(self, info: Info[Any, Any]) -> list[Thumbnail]:
        loader = context_of(info).loaders.thumbnails_of_representation
        return await _related(info, loader, int(self.id))

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type
class Sample:
    id: strawberry.ID
    name: str
    description: str | None
    tags: list[str]
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: m.Sample) -> Sample:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            description=row.description,
            tags=list(row.tags),
            created_at=row.created_at,
            _creator_id=row.creator_id,
        )

    @strawberry.field
    async def representations(self, info: Info[Any, Any]) -> list[Representation]:
        return await _related(info, context_of(info).loaders.representations_of_sample, int(self.id))

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type
class Experiment:
    id: strawberry.ID
    name: str
    description: str | None
    tags: list[str]
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: m.Experiment) -> Experiment:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            description=row.description,
            tags=list(row.tags),
            created_at=row.created_at,
            _creator_id=row.creator_id,
        )

    @strawberry.field
    async def representations(self, info: Info[Any, Any]) -> list[Representation]:
        loader = context_of(info).loaders.representations_of_experiment
        return await _related(info, loader, int(self.id))

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type
class Dataset:
    id: strawberry.ID
    name: str
    description: str | None
    tags: list[str]
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]
    _parent_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: m.Dataset) -> Dataset:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            description=row.description,
            tags=list(row.tags),
            created_at=row.created_at,
            _creator_id=row.creator_id,
            _parent_id=row.parent_id,
        )

    @strawberry.field
    async def parent(self, info: Info[Any, Any]) -> Dataset | None:
        return await _optional(info, context_of(info).loaders.dataset, self._parent_id)

    @strawberry.field
    async def children(self, info: Info[Any, Any]) -> list[Dataset]:
        return await _related(info, context_of(info).loaders.children_of_dataset, int(self.id))

    @strawberry.field
    async def representations(self, info: Info[Any, Any]) -> list[Representation]:
        loader = context_of(info).loaders.representations_of_dataset
        return await _related(info, loader, int(self.id))

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type(description="A region of interest; each vector is one 5-D point in (c, t, z, y, x) order.")
class ROI:
    id: strawberry.ID
    kind: RoiKind
    vectors: list[list[float]]
    label: str | None
    tags: list[str]
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]
    _representation_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: m.Roi) -> ROI:
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=RoiKind(row.kind),
            vectors=[list(v) for v in row.vectors],
            label=row.label,
            tags=list(row.tags),
            created_at=row.created_at,
            _creator_id=row.creator_id,
            _representation_id=row.representation_id,
        )

    @strawberry.field
    async def representation(self, info: Info[Any, Any]) -> Representation:
        rep: Representation = await _required(
            context_of(info).loaders.representation, self._representation_id, "image"
        )
        return rep

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type(description="A key/value measurement attached to an image, optionally to one of its ROIs.")
class Metric:
    id: strawberry.ID
    key: str
    value: JSON
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]
    _representation_id: strawberry.Private[int]
    _roi_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: m.Metric) -> Metric:
        return cls(
            id=strawberry.ID(str(row.id)),
            key=row.key,
            value=row.value,
            created_at=row.created_at,
            _creator_id=row.creator_id,
            _representation_id=row.representation_id,
            _roi_id=row.roi_id,
        )

    @strawberry.field
    async def representation(self, info: Info[Any, Any]) -> Representation:
        rep: Representation = await _required(
            context_of(info).loaders.representation, self._representation_id, "image"
        )
        return rep

    @strawberry.field
    async def roi(self, info: Info[Any, Any]) -> ROI | None:
        return await _optional(info, context_of(info).loaders.roi, self._roi_id)

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type
class TableColumn:
    name: str
    type: str


@strawberry.type(description="A parquet file on the object store.")
class Table:
    id: strawberry.ID
    name: str
    columns: list[TableColumn]
    tags: list[str]
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]
    _store_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: m.TableRow) -> Table:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            columns=[TableColumn(name=c["name"], type=c["type"]) for c in row.columns],
            tags=list(row.tags),
            created_at=row.created_at,
            _creator_id=row.creator_id,
            _store_id=row.store_id,
        )

    @strawberry.field
    async def store(self, info: Info[Any, Any]) -> ParquetStore:
        row = await _required(context_of(info).loaders.store, self._store_id, "store")
        return ParquetStore.from_row(row)

    @strawberry.field
    async def origins(self, info: Info[Any, Any]) -> list[Representation]:
        return await _related(info, context_of(info).loaders.origins_of_table, int(self.id))

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type(description="A small PNG of an image.")
class Thumbnail:
    id: strawberry.ID
    width: int
    height: int
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]
    _representation_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: m.Thumbnail) -> Thumbnail:
        # Never reads `row.png`: rows are read without it (see `listed_columns`).
        return cls(
            id=strawberry.ID(str(row.id)),
            width=row.width,
            height=row.height,
            created_at=row.created_at,
            _creator_id=row.creator_id,
            _representation_id=row.representation_id,
        )

    @strawberry.field
    async def representation(self, info: Info[Any, Any]) -> Representation:
        rep: Representation = await _required(
            context_of(info).loaders.representation, self._representation_id, "image"
        )
        return rep

    @strawberry.field
    async def png(self, info: Info[Any, Any]) -> Base64:
        png = await context_of(info).loaders.thumbnail_png.load(int(self.id))
        if png is None:
            # Deleted between reading the thumbnail and reading its PNG.
            raise NotFound(f"no thumbnail with id {self.id}")
        return Base64(png)

    @strawberry.field
    async def creator(self, info: Info[Any, Any]) -> User:
        return await _creator(info, self._creator_id)


@strawberry.type
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expiration: dt.datetime


@strawberry.type(
    description="Where and how to reach one store's objects; `prefix` is the only key prefix the "
    "grant allows."
)
class Grant:
    store_id: strawberry.ID
    upload_kind: UploadKind
    kind: StoreKind
    endpoint: str | None
    region: str | None
    bucket: str
    prefix: str
    path: str
    write: bool
    credentials: Credentials | None
    expires_at: dt.datetime


@strawberry.type
class RepresentationEvent:
    cursor: int
    kind: EventKind
    id: strawberry.ID | None
    representation: Representation | None


@strawberry.type
class RoiEvent:
    cursor: int
    kind: EventKind
    id: strawberry.ID | None
    roi: ROI | None


# The related row each kind of object cannot be shown without: (its id attribute, the loader).
_REQUIRED: dict[type, tuple[str, str]] = {
    Representation: ("_store_id", "store"),
    Table: ("_store_id", "store"),
    ROI: ("_representation_id", "representation"),
    Metric: ("_representation_id", "representation"),
    Thumbnail: ("_representation_id", "representation"),
}


async def present(info: Info[Any, Any], items: list[T]) -> list[T]:
    """``items`` whose required related row (an image's store, an ROI's image ...) still exists.

    A list read while another request deletes one of its objects would otherwise fail whole: the
    deleted object's non-null field errors, and the error nulls the entire list. Over HTTP the loaders
    cache what is loaded here, so the fields resolved later see these same rows.
    """
    required = _REQUIRED.get(type(items[0])) if items else None
    if required is None:
        return items
    attribute, name = required
    loader: DataLoader[int, Any] = getattr(context_of(info).loaders, name)
    rows = await loader.load_many([getattr(item, attribute) for item in items])
    return [item for item, row in zip(items, rows, strict=True) if row is not None]
