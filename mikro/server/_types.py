"""The strawberry output types and enums; they print to ``mikro/schema.graphql``."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NewType, TypeVar

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode
from strawberry.annotation import StrawberryAnnotation
from strawberry.dataloader import DataLoader
from strawberry.scalars import Base64
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server._acquisition import Acquisition, acquisition_from_value
from mikro.server._context import Context, context_from, context_of
from mikro.server._errors import NotFound
from mikro.server._execution import AT_ONCE, NOT_LOADED
from mikro.server._preload import load_all
from mikro.server._thumbnail_objects import thumbnail_object_png

if TYPE_CHECKING:
    from mikro.server._loaders import Loaders

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
    "selected_relations",
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


def _visible(ctx: Context, items: list[Any]) -> list[Any]:
    """Related objects the caller may see (relations only ever link one user's objects, but admins
    can link across users)."""
    user = ctx.require_user()
    return [item for item in items if user.can_see(item._creator_id)]


def _found(value: T | None, what: str, key: int) -> T:
    """A related row an object cannot be shown without; gone only if deleted while this request ran."""
    if value is None:
        raise NotFound(f"its {what} {key} was deleted while this request ran")
    return value


def _loaded(loader: DataLoader[Any, Any], key: Any) -> Any:
    """The loader's finished future for ``key``, or None when it has not loaded it (or failed)."""
    future = loader.cache_map.get(key) if loader.cache else None
    if future is not None and future.done() and not future.cancelled() and future.exception() is None:
        return future
    return None


# Fields derived from what they load: a relation (its loader and the attribute holding its key) and
# the GraphQL type, written as a string where the class is defined further down. Each is a pair:
# ``now(self, ctx)`` answers from what the request has loaded, or says NOT_LOADED, and ``later(self,
# ctx)`` is the coroutine that loads it.
#
# ``at_once``: the resolver answers at once from what the request has loaded (an image's relations,
# prefetched for a whole list, see `prefetch_representations`), and the execution may call ``now``
# itself, without the resolver (see `AT_ONCE` in _execution.py). Every other relation resolves as a
# coroutine: graphql-core then runs it as a task, a pause in which the request's deadline can stop a
# deep fan-out (answered at once level after level, a million objects would run without one).

_Now = Callable[[Any, Context], Any]
_Later = Callable[[Any, Context], Awaitable[Any]]


def _field(now: _Now, later: _Later, graphql_type: str | type, description: str | None, at_once: bool) -> Any:
    def resolve(self: Any, info: Info[Any, Any]) -> Any:
        ctx = context_of(info)
        value = now(self, ctx)
        # Typed as the value: graphql-core awaits what a resolver returns when it is awaitable, and
        # strawberry reads the GraphQL type from the resolver's annotation.
        return later(self, ctx) if value is NOT_LOADED else value

    async def awaited(self: Any, info: Info[Any, Any]) -> Any:
        value = resolve(self, info)
        return await value if inspect.isawaitable(value) else value

    def read(source: Any, root_value: Any, context: Any) -> Any:
        return now(source, context_from(root_value, context))

    annotation = StrawberryAnnotation(graphql_type, namespace=globals())
    return strawberry.field(
        resolver=resolve if at_once else awaited,
        graphql_type=annotation,
        description=description,
        metadata={AT_ONCE: read} if at_once else None,
    )


def _as_loaded(_ctx: Context, value: Any) -> Any:
    return value


def _related(
    loader_of: Callable[[Context], DataLoader[int, Any]],
    key: str,
    what: str,
    then: Callable[[Context, Any], Any],
) -> tuple[_Now, _Later]:
    """``then`` of the loader's row for the key in attribute ``key``, which must exist (see `_found`)."""

    def now(self: Any, ctx: Context) -> Any:
        value = getattr(self, key)
        future = _loaded(loader_of(ctx), value)
        return NOT_LOADED if future is None else then(ctx, _found(future.result(), what, value))

    async def later(self: Any, ctx: Context) -> Any:
        value = getattr(self, key)
        return then(ctx, _found(await loader_of(ctx).load(value), what, value))

    return now, later


def _shown(loader_name: str, key: str, *, single: bool) -> tuple[_Now, _Later]:
    """The related objects the caller may see that still exist (see `present`): a list, or with
    ``single`` one object or None (also when the key in attribute ``key`` is unset)."""

    def now(self: Any, ctx: Context) -> Any:
        value = getattr(self, key)
        if value is None:
            return None
        loaders = ctx.loaders
        future = _loaded(getattr(loaders, loader_name), int(value))
        if future is None:
            return NOT_LOADED
        found = future.result()
        if not found:
            # Nothing related, the common case of most relations: nothing to check.
            return None if single else []
        shown = _present_now(loaders, _visible(ctx, [found] if single else found))
        if shown is None:
            return NOT_LOADED
        return (shown[0] if shown else None) if single else shown

    async def later(self: Any, ctx: Context) -> Any:
        value = getattr(self, key)
        if value is None:
            return None
        loaders = ctx.loaders
        found = await getattr(loaders, loader_name).load(int(value))
        kept = await present(loaders, _visible(ctx, ([] if found is None else [found]) if single else found))
        return (kept[0] if kept else None) if single else kept

    return now, later


def _many(
    loader_name: str, graphql_type: str, description: str | None = None, *, at_once: bool = False
) -> Any:
    """The related objects listed by this object's id that the caller may see and that still exist."""
    return _field(*_shown(loader_name, "id", single=False), f"list[{graphql_type}]", description, at_once)


def _one(
    loader_name: str, key: str, graphql_type: str, description: str | None = None, *, at_once: bool = False
) -> Any:
    """A single related object, or None: unset, deleted, or another user's (see `_visible`)."""
    return _field(*_shown(loader_name, key, single=True), f"{graphql_type} | None", description, at_once)


def _image() -> Any:
    """The image an ROI, metric or thumbnail belongs to (it cannot be shown without it)."""
    relation = _related(lambda ctx: ctx.loaders.representation, "_representation_id", "image", _as_loaded)
    return _field(*relation, "Representation", None, at_once=False)


def _store(graphql_type: Any) -> Any:
    """The store an object's data is in, as ``graphql_type`` (ZarrStore, ParquetStore, MediaStore); at
    once when loaded (`present` loads it for every object a response shows), as a creator is: a store
    has no relations, so no fan-out goes through it."""
    relation = _related(
        lambda ctx: ctx.loaders.store,
        "_store_id",
        "store",
        lambda ctx, row: ctx.loaders.view(row, graphql_type.from_row),
    )
    return _field(*relation, graphql_type, None, at_once=True)


def _creator() -> Any:
    """The creator, at once when loaded (the caller is primed: most creators a response shows), else an
    awaitable of it: a coroutine per object and field costs more than the rest of the field. A user
    has no relations, so no fan-out goes through it."""
    relation = _related(lambda ctx: ctx.loaders.user, "_creator_id", "creator", _as_loaded)
    return _field(*relation, "User", None, at_once=True)


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
        description="Content hash of the file the image was ingested from: `blake3:<hex>` (a bare "
        "SHA-256 hex from mikro before BLAKE3)."
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

    # The relations answer at once from what this request has already loaded (a list's relations are
    # prefetched, see `prefetch_representations`), and return an awaitable otherwise: per object and
    # field, no coroutine, future and gather for the executor to run.
    store = _store(ZarrStore)
    sample = _one("sample", "_sample_id", "Sample", at_once=True)
    dataset = _one("dataset", "_dataset_id", "Dataset", at_once=True)
    experiments = _many("experiments_of_representation", "Experiment", at_once=True)
    origins = _many("origins_of_representation", "Representation", at_once=True)
    derived = _many("derived_of_representation", "Representation", at_once=True)
    rois = _many("rois_of_representation", "ROI", at_once=True)
    metrics = _many("metrics_of_representation", "Metric", at_once=True)
    thumbnails = _many("thumbnails_of_representation", "Thumbnail", at_once=True)
    creator = _creator()
    original_file = _one(
        "file",
        "_original_file_id",
        "File",
        "The file this image was ingested from, kept as it was.",
        at_once=True,
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


def selected_relations(info: Info[Any, Any]) -> list[tuple[str, str]]:
    """The image relations the query selects on this field's value: their loader and the attribute of
    the image holding its key."""
    return [_RELATIONS[name] for name in _selected_names(info) & _RELATIONS.keys()]


async def prefetch_representations(info: Info[Any, Any], reps: Sequence[Representation]) -> None:
    """Load the relations the query selects of all of ``reps`` now, one statement per relation, and the
    rows those related objects cannot be shown without (see `present`: an original file's store, the
    stores of origins ...), so that their resolvers answer at once (see `_shown`) instead of each
    awaiting its loader."""
    loaders = context_of(info).loaders
    if not reps:
        return
    # The images themselves, for their thumbnails', ROIs' and metrics' `present` check (which would
    # otherwise read every image of the list again, a coroutine per image).
    loaders.representation.prime_many({int(rep.id): rep for rep in reps})
    wanted: list[tuple[DataLoader[int, Any], set[int]]] = []
    for name in _selected_names(info) & _RELATIONS.keys():
        loader_name, key_attribute = _RELATIONS[name]
        loader: DataLoader[int, Any] = getattr(loaders, loader_name)
        if loader.cache:
            wanted.append(
                (loader, {int(k) for rep in reps if (k := getattr(rep, key_attribute)) is not None})
            )
    # Level after level (an ROI's image, then its store), every relation's loads of a level together.
    while wanted:
        required = (_required(loaders, _results(futures.values())) for futures in await load_all(wanted))
        wanted = [(loader, set(keys)) for loader, keys in filter(None, required)]


def _results(futures: Iterable[asyncio.Future[Any]]) -> list[Any]:
    """The objects the (finished) loads found (one relation: one type), lists flattened; none when
    their type needs no other rows (see `_REQUIRED`)."""
    found: list[Any] = []
    for future in futures:
        if not future.cancelled() and future.exception() is None:
            value = future.result()
            if isinstance(value, list):
                found += value
            elif value is not None:
                found.append(value)
            if found and type(found[0]) not in _REQUIRED:
                return []
    return found


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

    representations = _many("representations_of_sample", "Representation")
    creator = _creator()


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

    representations = _many("representations_of_experiment", "Representation")
    creator = _creator()


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

    parent = _one("dataset", "_parent_id", "Dataset")
    children = _many("children_of_dataset", "Dataset")
    representations = _many("representations_of_dataset", "Representation")
    creator = _creator()


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

    representation = _image()
    creator = _creator()


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

    representation = _image()
    roi = _one("roi", "_roi_id", "ROI")
    creator = _creator()


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

    store = _store(ParquetStore)
    origins = _many("origins_of_table", "Representation")
    creator = _creator()


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

    representation = _image()

    @strawberry.field
    async def png(self, info: Info[Any, Any]) -> Base64:
        ctx = context_of(info)
        png = await ctx.loaders.thumbnail_png.load(int(self.id))
        if png is None:
            # Deleted between reading the thumbnail and reading its PNG.
            raise NotFound(f"no thumbnail with id {self.id}")
        if isinstance(png, str):
            png = await thumbnail_object_png(ctx, png, f"thumbnail {self.id}")
        return Base64(png)

    creator = _creator()


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
    #: The context the event's fields are resolved with (see `context_of`).
    _context: strawberry.Private[Any] = None


@strawberry.type
class RoiEvent:
    cursor: int
    kind: EventKind
    id: strawberry.ID | None
    roi: ROI | None
    #: The context the event's fields are resolved with (see `context_of`).
    _context: strawberry.Private[Any] = None


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
    content_hash: str = strawberry.field(
        description="`<algorithm>:<hex digest>` of the bytes: blake3 (sha256 for files stored before)."
    )
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

    store = _store(MediaStore)
    creator = _creator()
    representations = _many(
        "representations_of_file",
        "Representation",
        "Images made from this file and images it is attached to.",
    )
    samples = _many("samples_of_file", "Sample")
    experiments = _many("experiments_of_file", "Experiment")
    datasets = _many("datasets_of_file", "Dataset")


# The related row each kind of object cannot be shown without: (its id attribute, the loader).
_REQUIRED: dict[type, tuple[str, str]] = {
    Representation: ("_store_id", "store"),
    Table: ("_store_id", "store"),
    File: ("_store_id", "store"),
    ROI: ("_representation_id", "representation"),
    Metric: ("_representation_id", "representation"),
    Thumbnail: ("_representation_id", "representation"),
}


def _required(loaders: Loaders, items: list[Any]) -> tuple[DataLoader[int, Any], list[int]] | None:
    """The rule: which rows ``items`` cannot be shown without (their loader and keys), None if none."""
    required = _REQUIRED.get(type(items[0])) if items else None
    if required is None:
        return None
    attribute, name = required
    return getattr(loaders, name), [getattr(item, attribute) for item in items]


def _kept(items: list[T], rows: Sequence[Any], shown: list[Any]) -> list[T]:
    """The items whose required row was found and can itself be shown (is one of ``shown``)."""
    alive = {id(row) for row in shown}
    return [item for item, row in zip(items, rows, strict=True) if row is not None and id(row) in alive]


async def present(loaders: Loaders, items: list[T]) -> list[T]:
    """``items`` whose required related rows (an image's store, an ROI's image and its store ...)
    still exist.

    A list read while another request deletes one of its objects would otherwise fail whole: the
    deleted object's non-null field errors, and the error nulls the entire list. The loaders cache
    what is loaded here (per request, or per subscription event), so the fields resolved later see
    these same rows.
    """
    needed = _required(loaders, items)
    if needed is None:
        return items
    loader, keys = needed
    futures = (await load_all([(loader, keys)]))[0]
    rows = [futures[key].result() for key in keys]
    return _kept(items, rows, await present(loaders, [row for row in rows if row is not None]))


def _present_now(loaders: Loaders, items: list[T]) -> list[T] | None:
    """`present` answered from what the loaders have loaded, or None when that is not enough."""
    needed = _required(loaders, items)
    if needed is None:
        return items
    loader, keys = needed
    futures = [_loaded(loader, key) for key in keys]
    if any(future is None for future in futures):
        return None
    rows = [future.result() for future in futures]
    shown = _present_now(loaders, [row for row in rows if row is not None])
    return None if shown is None else _kept(items, rows, shown)
