"""The strawberry output types and enums; they print to ``mikro/schema.graphql``."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Callable, Sequence
from typing import Any, NewType, TypeVar, cast

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode
from strawberry.dataloader import DataLoader
from strawberry.scalars import Base64
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server._acquisition import Acquisition, acquisition_from_value
from mikro.server._context import context_of
from mikro.server._errors import NotFound

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "BIG_INT_SCALAR",
    "JSON",
    "JSON_SCALAR",
    "ROI",
    "BigInt",
    "Channel",
    "Credentials",
    "Dataset",
    "EventKind",
    "Experiment",
    "File",
    "Grant",
    "MediaStore",
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
    "prefetch_representations",
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


# Byte counts of files pass 2**31, GraphQL's Int; like JSON, defined once in the schema's scalar_map.
BigInt = NewType("BigInt", int)

BIG_INT_SCALAR = strawberry.scalar(
    name="BigInt",
    description="An integer that may not fit in 32 bits (a byte count), serialized as a JSON number.",
    serialize=int,
    parse_value=int,
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


def _visible(info: Info[Any, Any], items: list[Any]) -> list[Any]:
    """Related objects the caller may see (relations only ever link one user's objects, but admins
    can link across users)."""
    user = context_of(info).require_user()
    return [item for item in items if user.can_see(item._creator_id)]


def _seen(info: Info[Any, Any], item: T | None) -> T | None:
    """A single related object, or None when unset, deleted or another user's (see `_visible`)."""
    if item is None or not context_of(info).require_user().can_see(getattr(item, "_creator_id", -1)):
        return None
    return item


def _store_of(row: Any, store_id: int) -> ZarrStore:
    if row is None:
        raise NotFound(f"its store {store_id} was deleted while this request ran")
    return ZarrStore.from_row(row)


async def _related_items(info: Info[Any, Any], loader: DataLoader[int, list[Any]], key: int) -> list[Any]:
    """Related objects the caller may see that still exist (see ``present``)."""
    return await present(info, _visible(info, await loader.load(key)))


async def _required(loader: DataLoader[int, Any], key: int, what: str) -> Any:
    """A related row an object cannot be shown without; gone only if deleted while this request ran."""
    row = await loader.load(key)
    if row is None:
        raise NotFound(f"its {what} {key} was deleted while this request ran")
    return row


async def _optional(info: Info[Any, Any], loader: DataLoader[int, T | None], key: int | None) -> T | None:
    """A single related object, or None: unset, deleted, or another user's (see `_seen`)."""
    return None if key is None else _seen(info, await loader.load(key))


def _creator(info: Info[Any, Any], creator_id: int) -> User:
    """The creator, at once when loaded (the caller is primed: most creators a response shows), else
    an awaitable of it: a coroutine per object and field costs more than the rest of the field."""
    return _related(context_of(info).loaders.user, creator_id, _existing_user)


def _existing_user(user: User | None) -> User:
    assert user is not None  # as it always was: a creator outlives what it created
    return user


def _related(loader: DataLoader[int, T], key: int, then: Callable[[T], R] | None = None) -> R:
    """``then`` of the loader's value for ``key``: the value itself when this request has already loaded
    it, else an awaitable of it. Typed as the value: graphql-core awaits what a resolver returns when it
    is awaitable, and strawberry reads the GraphQL type from the resolver's annotation."""
    # A string: subscripting Callable at run time builds a new alias on every call.
    convert = cast("Callable[[T], R]", _identity if then is None else then)
    future = _loaded(loader, key)
    if future is not None:
        return convert(future.result())

    async def later() -> R:
        return convert(await loader.load(key))

    return cast(R, later())


def _related_list(info: Info[Any, Any], loader: DataLoader[int, list[R]], key: int) -> list[R]:
    """The visible, still existing related objects: at once when this request has loaded them and the
    rows they need (see `present`), else an awaitable of them."""
    future = _loaded(loader, key)
    if future is not None:
        now = _present_now(info, _visible(info, future.result()))
        if now is not None:
            return now

    async def later() -> list[R]:
        return await present(info, _visible(info, await loader.load(key)))

    return cast("list[R]", later())


def _loaded(loader: DataLoader[Any, Any], key: Any) -> Any:
    """The loader's finished future for ``key``, or None when it has not loaded it (or failed)."""
    future = loader.cache_map.get(key) if loader.cache else None
    if future is not None and future.done() and not future.cancelled() and future.exception() is None:
        return future
    return None


def _present_now(info: Info[Any, Any], items: list[T]) -> list[T] | None:
    """`present` answered from what this request has loaded, or None when that is not enough."""
    required = _REQUIRED.get(type(items[0])) if items else None
    if required is None:
        return items
    attribute, name = required
    loader: DataLoader[int, Any] = getattr(context_of(info).loaders, name)
    kept: list[T] = []
    for item in items:
        future = _loaded(loader, getattr(item, attribute))
        if future is None:
            return None
        if future.result() is not None:
            kept.append(item)
    return kept


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
    array_path: str | None = strawberry.field(
        default=None,
        description="The image array's path inside the group at `path` (level 0 of an OME-Zarr image).",
    )
    levels: list[ZarrLevel] = strawberry.field(
        default_factory=list, description="Every resolution level, level 0 first (empty until finished)."
    )

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
            array_path=row.array_path,
            levels=[ZarrLevel.from_value(v) for v in row.levels or []],
        )


@strawberry.type(description="One resolution level of a stored image: an array of the image group.")
class ZarrLevel:
    path: str
    shape: list[int]
    chunks: list[int]
    shards: list[int] | None
    scale: list[float] = strawberry.field(
        description="The downsampling factor per dim relative to level 0 (1 for level 0)."
    )

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> ZarrLevel:
        return cls(
            path=value["path"],
            shape=value["shape"],
            chunks=value["chunks"],
            shards=value.get("shards"),
            scale=[float(f) for f in value["scale"]],
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
    source_fingerprint: str | None = strawberry.field(
        description="Content hash of the file the image was ingested from (sha256 hex)."
    )
    source_scene: int | None = strawberry.field(description="Index of the image's scene in its source file.")
    source_scene_name: str | None
    source_scene_count: int | None = strawberry.field(description="How many scenes its source file has.")
    acquisition: Acquisition | None
    _creator_id: strawberry.Private[int]
    _store_id: strawberry.Private[int]
    _sample_id: strawberry.Private[int | None]
    _dataset_id: strawberry.Private[int | None]
    _original_file_id: strawberry.Private[int | None]
    #: The store's row when it was loaded ahead (a subscription's event), so the field answers from it.
    _store_row: strawberry.Private[Any] = None

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
            source_fingerprint=row.source_fingerprint,
            source_scene=row.source_scene,
            source_scene_name=row.source_scene_name,
            source_scene_count=row.source_scene_count,
            acquisition=acquisition_from_value(row.acquisition),
            _creator_id=row.creator_id,
            _store_id=row.store_id,
            _sample_id=row.sample_id,
            _dataset_id=row.dataset_id,
            _original_file_id=row.original_file_id,
        )

    # Sync resolvers that answer at once from what this request has already loaded (a list's relations
    # are prefetched, see `prefetch_representations`), and return an awaitable otherwise: per object and
    # field, no coroutine, future and gather for the executor to run.

    @strawberry.field
    def store(self, info: Info[Any, Any]) -> ZarrStore:
        if self._store_row is not None:
            return ZarrStore.from_row(self._store_row)
        store_id = self._store_id
        return _related(context_of(info).loaders.store, store_id, lambda row: _store_of(row, store_id))

    @strawberry.field
    def sample(self, info: Info[Any, Any]) -> Sample | None:
        if self._sample_id is None:
            return None
        return _related(context_of(info).loaders.sample, self._sample_id, lambda item: _seen(info, item))

    @strawberry.field
    def dataset(self, info: Info[Any, Any]) -> Dataset | None:
        if self._dataset_id is None:
            return None
        return _related(context_of(info).loaders.dataset, self._dataset_id, lambda item: _seen(info, item))

    @strawberry.field
    def experiments(self, info: Info[Any, Any]) -> list[Experiment]:
        return _related_list(info, context_of(info).loaders.experiments_of_representation, int(self.id))

    @strawberry.field
    def origins(self, info: Info[Any, Any]) -> list[Representation]:
        return _related_list(info, context_of(info).loaders.origins_of_representation, int(self.id))

    @strawberry.field
    def derived(self, info: Info[Any, Any]) -> list[Representation]:
        return _related_list(info, context_of(info).loaders.derived_of_representation, int(self.id))

    @strawberry.field
    def rois(self, info: Info[Any, Any]) -> list[ROI]:
        return _related_list(info, context_of(info).loaders.rois_of_representation, int(self.id))

    @strawberry.field
    def metrics(self, info: Info[Any, Any]) -> list[Metric]:
        return _related_list(info, context_of(info).loaders.metrics_of_representation, int(self.id))

    @strawberry.field
    def thumbnails(self, info: Info[Any, Any]) -> list[Thumbnail]:
        return _related_list(info, context_of(info).loaders.thumbnails_of_representation, int(self.id))

    @strawberry.field
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)

    @strawberry.field(description="The file this image was ingested from, kept as it was.")  # type: ignore[untyped-decorator]
    def original_file(self, info: Info[Any, Any]) -> File | None:
        if self._original_file_id is None:
            return None
        # Another user's file (an admin linked it) stays invisible, as every relation does.
        return _related(
            context_of(info).loaders.file,
            self._original_file_id,
            lambda found: found if found is not None and _visible(info, [found]) else None,
        )


# Representation fields answered by a request's loaders: field -> (loader, attribute holding its key).
_RELATIONS = {
    "store": ("store", "_store_id"),
    "sample": ("sample", "_sample_id"),
    "dataset": ("dataset", "_dataset_id"),
    "experiments": ("experiments_of_representation", "id"),
    "origins": ("origins_of_representation", "id"),
    "derived": ("derived_of_representation", "id"),
    "rois": ("rois_of_representation", "id"),
    "metrics": ("metrics_of_representation", "id"),
    "thumbnails": ("thumbnails_of_representation", "id"),
    "originalFile": ("file", "_original_file_id"),
}


#: {id(field node): (the node, names of the fields it selects)}; the parsed documents are cached
#: (ParserCache), so their nodes recur request after request. Values hold the node, so ids stay unique.
_SELECTED: dict[int, tuple[Any, frozenset[str]]] = {}


def _selected_names(info: Info[Any, Any]) -> frozenset[str]:
    """The names of the fields selected on this field's value, through fragments (directives ignored:
    at worst a relation is loaded that is not shown). Strawberry's ``info.selected_fields`` converts
    the whole nested selection instead, every time."""
    raw = info._raw_info
    names: set[str] = set()
    for node in raw.field_nodes:
        entry = _SELECTED.get(id(node))
        if entry is None or entry[0] is not node:
            found: set[str] = set()
            stack = [node.selection_set]
            while stack:
                selection_set = stack.pop()
                for selection in selection_set.selections if selection_set is not None else ():
                    if isinstance(selection, FieldNode):
                        found.add(selection.name.value)
                    elif isinstance(selection, FragmentSpreadNode):
                        fragment = raw.fragments.get(selection.name.value)
                        stack.append(None if fragment is None else fragment.selection_set)
                    elif isinstance(selection, InlineFragmentNode):
                        stack.append(selection.selection_set)
            if len(_SELECTED) >= 4096:
                _SELECTED.clear()
            entry = _SELECTED[id(node)] = (node, frozenset(found))
        names |= entry[1]
    return frozenset(names)


async def prefetch_representations(info: Info[Any, Any], reps: Sequence[Representation]) -> None:
    """Load the relations the query selects of all of ``reps`` now, one statement per relation, so that
    their resolvers answer at once (see `_related`) instead of each awaiting its loader."""
    loaders = context_of(info).loaders
    if not reps:
        return
    # The images themselves, for their thumbnails', ROIs' and metrics' `present` check (which would
    # otherwise read every image of the list again, a coroutine per image).
    loaders.representation.prime_many({int(rep.id): rep for rep in reps})
    names = _selected_names(info)
    pending: list[Any] = []
    for name in names & _RELATIONS.keys():
        loader_name, key_attribute = _RELATIONS[name]
        loader: DataLoader[Any, Any] = getattr(loaders, loader_name)
        if loader.cache:
            keys = {getattr(rep, key_attribute) for rep in reps} - {None}
            pending += [loader.load(int(k)) for k in keys]
    if not pending:
        return
    # Waited on, never awaited directly: a cancelled request (a sibling field failed) must not cancel
    # the loaders' futures, and its reads finish before it ends and gives its session back. A failed
    # batch fails its fields as before: their resolvers find the error in the loader.
    try:
        await asyncio.wait(pending)
    except asyncio.CancelledError:
        await asyncio.wait(pending)
        raise


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
        return await _related_items(info, context_of(info).loaders.representations_of_sample, int(self.id))

    @strawberry.field
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)


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
        return await _related_items(info, loader, int(self.id))

    @strawberry.field
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)


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
        return await _related_items(info, context_of(info).loaders.children_of_dataset, int(self.id))

    @strawberry.field
    async def representations(self, info: Info[Any, Any]) -> list[Representation]:
        loader = context_of(info).loaders.representations_of_dataset
        return await _related_items(info, loader, int(self.id))

    @strawberry.field
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)


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
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)


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
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)


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
        return await _related_items(info, context_of(info).loaders.origins_of_table, int(self.id))

    @strawberry.field
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)


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
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)


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


@strawberry.type(description="Where a file's bytes are: one object, `<key>/file`.")
class MediaStore:
    id: strawberry.ID
    bucket: str
    key: str
    path: str

    @classmethod
    def from_row(cls, row: m.Store) -> MediaStore:
        return cls(id=strawberry.ID(str(row.id)), bucket=row.bucket, key=row.key, path=row.path)


@strawberry.type(
    description="A file kept as it is: the original an image was ingested from, or an attachment (a PDF, "
    "a CSV, a protocol) linked to images, samples, experiments or datasets."
)
class File:
    id: strawberry.ID
    name: str
    size: BigInt
    content_hash: str = strawberry.field(description="`<algorithm>:<hex digest>` of the bytes, e.g. sha256.")
    media_type: str
    tags: list[str]
    created_at: dt.datetime
    _creator_id: strawberry.Private[int]
    _store_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: m.FileRow) -> File:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            size=BigInt(row.size),
            content_hash=row.content_hash,
            media_type=row.media_type,
            tags=list(row.tags),
            created_at=row.created_at,
            _creator_id=row.creator_id,
            _store_id=row.store_id,
        )

    @strawberry.field
    async def store(self, info: Info[Any, Any]) -> MediaStore:
        row = await context_of(info).loaders.store.load(self._store_id)
        assert row is not None
        return MediaStore.from_row(row)

    @strawberry.field
    def creator(self, info: Info[Any, Any]) -> User:
        return _creator(info, self._creator_id)

    @strawberry.field(description="Images made from this file and images it is attached to.")  # type: ignore[untyped-decorator]
    async def representations(self, info: Info[Any, Any]) -> list[Representation]:
        return _visible(info, await context_of(info).loaders.representations_of_file.load(int(self.id)))

    @strawberry.field
    async def samples(self, info: Info[Any, Any]) -> list[Sample]:
        return _visible(info, await context_of(info).loaders.samples_of_file.load(int(self.id)))

    @strawberry.field
    async def experiments(self, info: Info[Any, Any]) -> list[Experiment]:
        return _visible(info, await context_of(info).loaders.experiments_of_file.load(int(self.id)))

    @strawberry.field
    async def datasets(self, info: Info[Any, Any]) -> list[Dataset]:
        return _visible(info, await context_of(info).loaders.datasets_of_file.load(int(self.id)))


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
