"""Creating Representations from zarr uploads: one (``createRepresentation``) or a batch
(``createRepresentations``), finishing each upload in the same request.

Every check reads before the write transaction: SQLite holds its one write lock from the transaction's
first statement to the commit, and concurrent uploads queue on it. A batch is all or nothing: its rows
go in with one transaction, and an error names the input it is about (``inputs[3]: ...``).

The array's metadata comes from the ``arrayMetadata`` the client sends (the ``0/zarr.json`` it wrote)
or, without it, from one read of the store. Trusting the client's copy gives up no integrity: the
write grant stays valid after this request, so the objects could be rewritten at any time anyway; what
the check bought was only a friendlier error for a client that forgot to write its metadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._acquisition import acquisition_value
from mikro.server._auth import AuthUser
from mikro.server._context import Context
from mikro.server._crud import KIND_NAMES, insert_tag_rows, owned, parse_id, rows_by_id, store_of_kind
from mikro.server._data_plane import array_values, read_array
from mikro.server._database import Statement
from mikro.server._errors import BadUserInput, Conflict, about_input
from mikro.server._inputs import RepresentationInput
from mikro.server._png import THUMBNAIL_OBJECT, thumbnail_size
from mikro.server._quota import check_quota
from mikro.server._row_values import channel_values, checked_name, physical_values
from mikro.server._services import WriteTx
from mikro.server._sqlite import reused
from mikro.server._zarr_meta import ArrayInfo, array_info_from_document, with_levels

__all__ = ["MAX_BATCH", "REP", "create_representations"]

DIMS = ("c", "t", "z", "y", "x")
REP = "representation"
#: Images one ``createRepresentations`` request may create (the body limit bounds it too: a thumbnail
#: sent with its image is tens of kilobytes).
MAX_BATCH = 256


@dataclass
class _Checked:
    """One input after every read: what its transaction needs."""

    input: RepresentationInput
    store: Any  # its row (listed columns) as the checks read it
    sample_id: int | None
    dataset_id: int | None
    experiments: list[int]
    origins: list[int]
    array: ArrayInfo | None  # set when this request finishes the upload
    shape: list[int]
    dtype: str
    dims: list[str]
    thumbnail_size: tuple[int, int] | None = None  # (width, height) of the input's PNG
    original_file_id: int | None = None


async def create_representations(
    ctx: Context, user: AuthUser, inputs: list[RepresentationInput]
) -> list[Any]:
    """Create one Representation per input, all in one transaction; returns the rows in input order
    (their columns as attributes, as `t.Representation.from_row` reads them)."""
    if not inputs:
        return []
    if len(inputs) > MAX_BATCH:
        raise BadUserInput(f"at most {MAX_BATCH} representations per request, not {len(inputs)}")
    labels = [f"inputs[{i}]: " if len(inputs) > 1 else "" for i in range(len(inputs))]
    seen: dict[str, int] = {}
    sizes: list[tuple[int, int] | None] = []
    for i, input in enumerate(inputs):
        first = seen.setdefault(str(input.store), i)
        if first != i:
            raise BadUserInput(f"inputs[{first}] and inputs[{i}] both use store {input.store}")
        with about_input(labels[i]):
            thumb = input.thumbnail
            sizes.append(
                None if thumb is None else thumbnail_size(thumb.png, thumb.width, thumb.height, "thumbnail")
            )
    found = await _load_for_checks(ctx, inputs)
    checked: list[_Checked] = []
    for label, input, size in zip(labels, inputs, sizes, strict=True):
        with about_input(label):
            item = await _check(ctx, found, input, user)
        item.thumbnail_size = size
        checked.append(item)
    rows, thumbnails = await ctx.services.write(lambda tx: _insert(ctx, tx, checked, user))
    _prime_new(ctx, rows, inputs, thumbnails)
    _prime_stores(ctx, checked)
    return rows


def _prime_stores(ctx: Context, items: list[_Checked]) -> None:
    """Give this request's store loader the new images' stores as the transaction left them: the rows
    the checks read, with what finishing them wrote (the answer read them again, a statement and a
    trip to a reading thread per request)."""
    stores = {}
    for item in items:
        store = item.store
        if item.array is not None:
            store = SimpleNamespace(**{**store._asdict(), **array_values(ctx, item.array)})
        stores[item.store.id] = store
    ctx.loaders.store.prime_many(stores)


def _prime_new(
    ctx: Context,
    rows: list[m.Representation],
    inputs: list[RepresentationInput],
    thumbnails: dict[int, list[t.Thumbnail]],
) -> None:
    """Give this request's loaders what the relations of new images hold, known without a read: no
    image is derived from them yet, they have no ROIs or metrics, no experiments or origins where
    their input named none, and the thumbnail their input brought or none. The answer to a batch read
    them with a statement each (images created by others after the commit are not shown, as if the
    answer had been read at the commit)."""
    loaders = ctx.loaders
    loaders.thumbnails_of_representation.prime_many(thumbnails)
    for loader in (
        loaders.derived_of_representation,
        loaders.rois_of_representation,
        loaders.metrics_of_representation,
    ):
        loader.prime_many({row.id: [] for row in rows})
    pairs = list(zip(rows, inputs, strict=True))
    loaders.experiments_of_representation.prime_many({row.id: [] for row, i in pairs if not i.experiments})
    loaders.origins_of_representation.prime_many({row.id: [] for row, i in pairs if not i.origins})


def _ids(raw: Iterable[Any]) -> set[int]:
    """The ids among ``raw`` that parse (the checks name those that do not)."""
    out = set()
    for value in raw:
        if value is not None and str(value).isdigit():
            out.add(int(str(value)))
    return out


@dataclass
class _Found:
    """What the checks of a batch read: rows by id per model, and {store id: representation id} of the
    stores that already hold one."""

    rows: dict[type[Any], dict[int, Any]]
    holding: dict[int, int]

    def owned(self, model: type[Any], raw_id: Any, user: AuthUser) -> Any:
        """`get_owned`'s answer, from the rows read."""
        return owned(model, self.rows[model].get(parse_id(raw_id, KIND_NAMES[model])), raw_id, user)

    def owned_ids(self, model: type[Any], raw_ids: list[Any], user: AuthUser) -> list[int]:
        return [self.owned(model, raw, user).id for raw in dict.fromkeys(raw_ids)]


async def _load_for_checks(ctx: Context, inputs: list[RepresentationInput]) -> _Found:
    """Load what the checks of all inputs read, one statement per table, in one call (`Context.rows`:
    on SQLite one trip to a reading thread, where the async ORM paid a trip per statement and a
    ``session.get`` per input and object)."""
    stores = _ids(i.store for i in inputs)
    wanted: list[tuple[Any, set[int]]] = [
        (m.Store, stores),
        (m.Sample, _ids(i.sample for i in inputs)),
        (m.Dataset, _ids(i.dataset for i in inputs)),
        (m.Experiment, _ids(e for i in inputs for e in i.experiments)),
        (m.Representation, _ids(o for i in inputs for o in i.origins)),
        (m.FileRow, _ids(i.original_file for i in inputs)),
    ]
    asked = [(model, ids) for model, ids in wanted if ids]
    statements: list[Statement] = [(rows_by_id(model), {"ids": sorted(ids)}) for model, ids in asked]
    statements.append((_HOLDING, {"ids": sorted(stores)}))
    *found, holding = await ctx.rows(statements)
    rows: dict[type[Any], dict[int, Any]] = {model: {} for model, _ in wanted}
    for (model, _), loaded in zip(asked, found, strict=True):
        rows[model] = {row.id: row for row in loaded}
    return _Found(rows, {store_id: rep_id for store_id, rep_id in holding})


async def _check(ctx: Context, found: _Found, input: RepresentationInput, user: AuthUser) -> _Checked:
    checked_name(input.name)
    store = store_of_kind(found.owned(m.Store, input.store, user), input.store, "ZARR")
    used = found.holding.get(store.id)
    if used is not None:
        raise Conflict(f"store {input.store} already holds representation {used}")
    sample_id = found.owned(m.Sample, input.sample, user).id if input.sample else None
    dataset_id = found.owned(m.Dataset, input.dataset, user).id if input.dataset else None
    experiments = found.owned_ids(m.Experiment, input.experiments, user)
    origins = found.owned_ids(m.Representation, input.origins, user)
    array: ArrayInfo | None = None
    if not store.populated:
        # Finishing here saves the client a finishUpload round trip per image.
        if input.array_metadata is not None:
            array = array_info_from_document(input.array_metadata, store.key)
            levels = [(v.path, v.array_metadata, v.scale) for v in input.levels or []]
            with_levels(array, store.key, levels)
        else:
            array = await read_array(ctx, store.key)
    shape: list[int] | None
    dtype: str | None
    if array is not None:
        shape, dtype, names = array.shape, array.dtype, array.dimension_names
    else:
        shape, dtype, names = store.shape, store.dtype, store.dimension_names
    dims = list(names or [])
    if not dims or any(d not in DIMS for d in dims) or len(set(dims)) != len(dims):
        raise BadUserInput(f"the array's dimension_names {names!r} must be distinct names from c,t,z,y,x")
    assert shape is not None and dtype is not None
    checked = _Checked(
        input, store, sample_id, dataset_id, experiments, origins, array, list(shape), dtype, dims
    )
    if input.original_file is not None:
        checked.original_file_id = found.owned(m.FileRow, input.original_file, user).id
    return checked


def _insert(
    ctx: Context, tx: WriteTx, items: list[_Checked], user: AuthUser
) -> tuple[list[Any], dict[int, list[t.Thumbnail]]]:
    """The write transaction: every row of a batch with one statement per table, not one per image
    (the write lock is held for a handful of statements whatever the batch's size), and their events.
    Returns the images' rows and each image's thumbnails (as the answer shows them)."""
    s = tx.session
    finishing = [item for item in items if item.array is not None]
    check_quota(s, ctx.services.settings, user.id, [item.array for item in finishing if item.array])
    if finishing:
        # A concurrent finishUpload read the same objects: whichever lands first is the same.
        values = [{"b_id": i.store.id, **_bound(array_values(ctx, i.array))} for i in finishing if i.array]
        columns: dict[str, Any] = {name[2:]: bindparam(name) for name in values[0] if name != "b_id"}
        finish = (
            update(_STORES)
            .where(_STORES.c.id == bindparam("b_id"), _STORES.c.populated.is_(False))
            .values(columns)
        )
        s.execute(finish, values)
    now = m.utcnow()
    values = [
        {
            "name": item.input.name,
            "store_id": item.store.id,
            "shape": item.shape,
            "dims": item.dims,
            "dtype": item.dtype,
            "variety": item.input.variety.value,
            "sample_id": item.sample_id,
            "dataset_id": item.dataset_id,
            "channels": channel_values(item.input.channels),
            "physical_size": physical_values(item.input.physical_size),
            "acquisition_date": item.input.acquisition_date,
            "tags": list(dict.fromkeys(item.input.tags)),
            "original_file_id": item.original_file_id,
            "creator_id": user.id,
            "created_at": now,
            "source_fingerprint": item.input.source_fingerprint,
            "source_scene": item.input.source_scene,
            "source_scene_name": item.input.source_scene_name,
            "source_scene_count": item.input.source_scene_count,
            "acquisition": acquisition_value(item.input.acquisition),
        }
        for item in items
    ]
    # One executemany INSERT for the batch, sent as one multi-row statement by SQLAlchemy's
    # "insertmanyvalues": its compiled form is cached, where ``.values(rows)`` compiled a new statement
    # (a bind parameter per cell) for every batch. The ORM's flush inserted row by row here (an
    # AUTOINCREMENT table gives it nothing to match RETURNING rows to its objects by); the ids are
    # matched by store, which is unique per image.
    try:
        found = s.execute(_INSERT_REPRESENTATIONS, values)
    except IntegrityError:
        # Taken by a concurrent createRepresentation since the check (one image per store).
        stores = ", ".join(str(item.input.store) for item in items)
        raise Conflict(f"a store of {stores} already holds a representation") from None
    ids = {store_id: rep_id for rep_id, store_id in found.all()}
    # Plain objects, not ORM ones: nothing here is flushed, and constructing an instrumented object
    # cost 30 times as much.
    rows = [SimpleNamespace(id=ids[v["store_id"]], **v) for v in values]
    insert_tag_rows(s, rows, kind=REP)
    experiment_rows = [
        {"representation_id": row.id, "experiment_id": e}
        for row, i in zip(rows, items, strict=True)
        for e in i.experiments
    ]
    origin_rows = [
        {"derived_id": row.id, "origin_id": o} for row, i in zip(rows, items, strict=True) for o in i.origins
    ]
    for table, link_rows in (
        (m.representation_experiments, experiment_rows),
        (m.representation_origins, origin_rows),
    ):
        if link_rows:
            s.execute(insert(table), link_rows)
    thumbnail_rows: list[dict[str, Any]] = [
        {
            "representation_id": row.id,
            "png": i.input.thumbnail.png,
            # A thumbnail sent without its PNG is the object the client wrote beside the image.
            "key": None if i.input.thumbnail.png is not None else f"{i.store.key}/{THUMBNAIL_OBJECT}",
            "width": i.thumbnail_size[0],
            "height": i.thumbnail_size[1],
            "creator_id": user.id,
            "created_at": now,
        }
        for row, i in zip(rows, items, strict=True)
        if i.input.thumbnail is not None and i.thumbnail_size is not None
    ]
    thumbnails: dict[int, list[t.Thumbnail]] = {row.id: [] for row in rows}
    if thumbnail_rows:
        # Each image of a batch brings at most one thumbnail: its image tells the returned ids apart.
        found = s.execute(_INSERT_THUMBNAILS, thumbnail_rows)
        id_of: dict[int, int] = {rep_id: thumbnail_id for rep_id, thumbnail_id in found.all()}
        for value in thumbnail_rows:
            thumbnail: Any = SimpleNamespace(id=id_of[value["representation_id"]], **value)
            thumbnails[thumbnail.representation_id].append(t.Thumbnail.from_row(thumbnail))
    tx.record_many(REP, "CREATE", [(row.id, row.dataset_id, row.creator_id) for row in rows])
    return rows, thumbnails


_STORES = cast(Table, m.Store.__table__)
_REPRESENTATIONS = cast(Table, m.Representation.__table__)
_THUMBNAILS = cast(Table, m.Thumbnail.__table__)
_HOLDING = reused(
    select(_REPRESENTATIONS.c.store_id, _REPRESENTATIONS.c.id).where(
        _REPRESENTATIONS.c.store_id.in_(bindparam("ids", expanding=True))
    )
)
# Matched to their inputs by a unique column (an image's store; a thumbnail's image), not by RETURNING's
# order: asked to sort by parameter order, SQLAlchemy sends SQLite one INSERT per row (see
# _data_plane._INSERT_STORES).
_INSERT_THUMBNAILS = insert(_THUMBNAILS).returning(_THUMBNAILS.c.representation_id, _THUMBNAILS.c.id)
_INSERT_REPRESENTATIONS = insert(_REPRESENTATIONS).returning(
    _REPRESENTATIONS.c.id, _REPRESENTATIONS.c.store_id
)


def _bound(values: dict[str, Any]) -> dict[str, Any]:
    return {f"b_{name}": value for name, value in values.items()}
