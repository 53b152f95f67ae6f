"""Files kept as they are: ``file`` / ``files`` and ``createFile`` / ``updateFile`` / ``deleteFile``.

A file's bytes are one object, ``<key>/file``, on a MEDIA store the client reserved with
``requestUpload(kind: MEDIA)`` and wrote (multipart) with its grant. ``createFile`` then records it: the
server checks the object is there with the size the client names (one HEAD request), and takes the
client's content hash as it comes (reading a large file back to hash it would cost the server the whole
upload again; readers verify it when they download). Until then nothing is visible, and an upload
never recorded is collected as an abandoned upload. Another user's file is NOT_FOUND, to read and to
link alike: its id says nothing about whether it exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import anyio
import strawberry
from sqlalchemy import ColumnElement, Select, Table, bindparam, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._context import Context, context_of
from mikro.server._crud import (
    KIND_NAMES,
    begin_mutation,
    drop_tags,
    get_owned,
    get_visible_row,
    insert_tag_rows,
    owned,
    parse_id,
    replace_tags,
    rows_by_id,
    store_of_kind,
)
from mikro.server._errors import BadUserInput, Conflict, Forbidden, NotFound, about_input
from mikro.server._inputs import FileFilter, FileInput, FileUpdateInput, OffsetPaginationInput
from mikro.server._query import _list
from mikro.server._row_values import checked_name, owned_ids, set_links
from mikro.server._store_cleanup import delete_objects, delete_stores

__all__ = ["FILE_KEY", "MAX_FILES", "FileMutation", "FileQuery", "create_files", "owned_file"]

#: Files one ``createFiles`` request may record.
MAX_FILES = 64
#: Content hashes one ``files`` filter may name (an ingest's batch of files).
MAX_CONTENT_HASHES = 2000

#: The object's key under its MEDIA store's prefix (names change; the key does not).
FILE_KEY = "file"

#: blake3 for files since BLAKE3 fingerprints; sha256 as mikro before wrote them (and a client may).
_CONTENT_HASH = re.compile(r"(blake3|sha256):[0-9a-f]{64}")
# type "/" subtype, optional parameters (RFC 6838 names); enough to refuse what is not a media type.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;.*)?")

#: What a file links to: (input field, model, link table, the link table's column of that model).
_LINKS: tuple[tuple[str, type[Any], Any, str], ...] = (
    ("representations", m.Representation, m.file_representations, "representation_id"),
    ("samples", m.Sample, m.file_samples, "sample_id"),
    ("experiments", m.Experiment, m.file_experiments, "experiment_id"),
    ("datasets", m.Dataset, m.file_datasets, "dataset_id"),
)


def _not_found(raw_id: Any) -> NotFound:
    return NotFound(f"no file with id {raw_id}")


async def owned_file(session: AsyncSession, raw_id: Any, user: AuthUser) -> m.FileRow:
    """The caller's file (or any, for an admin); NOT_FOUND otherwise."""
    try:
        return await get_owned(session, m.FileRow, raw_id, user)
    except Forbidden:
        raise _not_found(raw_id) from None


def _content_hash(value: str) -> str:
    if not _CONTENT_HASH.fullmatch(value):
        raise BadUserInput(
            f"contentHash must be 'blake3:' or 'sha256:' and 64 lowercase hex digits, not {value!r}"
        )
    return value


def _media_type(value: str) -> str:
    if len(value) > 255 or not _MEDIA_TYPE.fullmatch(value):
        raise BadUserInput(f"mediaType {value!r} is not a media type (type/subtype)")
    return value


async def _set_links(
    session: AsyncSession, file_id: int, input: FileInput | FileUpdateInput, user: AuthUser, *, new: bool
) -> None:
    for field, model, table, column in _LINKS:
        raw: list[Any] | None = getattr(input, field)
        if raw is None:
            continue
        ids = await owned_ids(session, model, raw, user)
        await set_links(session, table, "file_id", file_id, column, ids, new=new)


def _narrow(flt: FileFilter | None, user_id: int) -> Callable[[Select[Any]], Select[Any]]:
    def narrow(query: Select[Any]) -> Select[Any]:
        if flt is None:
            return query
        f = m.FileRow
        for field, _, table, column in _LINKS:
            # The filter names each relation in the singular.
            raw = getattr(flt, field[:-1])
            if raw is None:
                continue
            wanted = parse_id(raw, field[:-1])
            linked: ColumnElement[bool] = exists().where(table.c.file_id == f.id, table.c[column] == wanted)
            if field == "representations":
                original = exists().where(
                    m.Representation.id == wanted, m.Representation.original_file_id == f.id
                )
                linked = or_(linked, original)
            query = query.where(linked)
        if flt.content_hash is not None:
            query = query.where(f.content_hash == flt.content_hash)
        if flt.content_hashes is not None:
            if len(flt.content_hashes) > MAX_CONTENT_HASHES:
                raise BadUserInput(
                    f"at most {MAX_CONTENT_HASHES} content hashes per filter, not {len(flt.content_hashes)}"
                )
            # The caller's own, also for an admin: an ingest links its images to what it finds here.
            query = query.where(f.content_hash.in_(set(flt.content_hashes)), f.creator_id == user_id)
        return query

    return narrow


@strawberry.type
class FileQuery:
    @strawberry.field
    async def file(self, info: Info[Any, Any], id: strawberry.ID) -> t.File:
        ctx = context_of(info)
        user = ctx.require_user()
        async with ctx.read() as session:
            try:
                row = await get_visible_row(session, m.FileRow, id, user)
            except Forbidden:
                raise _not_found(id) from None
        return t.File.from_row(row)

    @strawberry.field(description="Your files; `search` matches the name.")  # type: ignore[untyped-decorator]
    async def files(
        self,
        info: Info[Any, Any],
        filter: FileFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.File]:
        user = context_of(info).require_user()
        return await _list(info, m.FileRow, t.File.from_row, filter, pagination, _narrow(filter, user.id))


@strawberry.type
class FileMutation:
    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Record a file whose bytes are in place (see FileInput); links and tags as given."
    )
    async def create_file(self, info: Info[Any, Any], input: FileInput) -> t.File:
        ctx, user = begin_mutation(info, input)
        (row,) = await create_files(ctx, user, [input])
        return t.File.from_row(row)

    @strawberry.mutation
    async def update_file(self, info: Info[Any, Any], id: strawberry.ID, input: FileUpdateInput) -> t.File:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = await owned_file(tx.session, id, user)
            if input.name is not None:
                row.name = checked_name(input.name)
            if input.media_type is not None:
                row.media_type = _media_type(input.media_type)
            if input.tags is not None:
                await replace_tags(tx.session, row, input.tags)
            await _set_links(tx.session, row.id, input, user, new=False)
        return t.File.from_row(row)

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Delete a file and its object; images made from it are kept (their originalFile "
        "becomes null) and its links go."
    )
    async def delete_file(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await owned_file(tx.session, id, user)
            rep = m.Representation
            made_from = (
                await tx.session.execute(
                    select(rep.id, rep.dataset_id, rep.creator_id).where(rep.original_file_id == row.id)
                )
            ).all()
            await drop_tags(tx.session, m.FileRow, [row.id])
            # Link rows go by ON DELETE CASCADE, images' originalFile by ON DELETE SET NULL: those
            # images changed, and their watchers hear of it.
            await tx.session.delete(row)
            await tx.session.flush()
            tx.record_many(
                "representation", "UPDATE", [(i, dataset, owner) for i, dataset, owner in made_from]
            )
            keys = await tx.session.run_sync(delete_stores, [row.store_id])
        await delete_objects(ctx.services, keys)
        return strawberry.ID(str(row.id))

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description=f"Record several files whose bytes are in place (at most {MAX_FILES}) in one request "
        "and one transaction: all or none; an error names its input (inputs[i]). Returned in input order."
    )
    async def create_files(self, info: Info[Any, Any], inputs: list[FileInput]) -> list[t.File]:
        ctx, user = begin_mutation(info, inputs)
        return [t.File.from_row(row) for row in await create_files(ctx, user, inputs)]


def _checked_values(input: FileInput) -> tuple[str, str, str]:
    """The input's name, content hash and media type, checked (BAD_USER_INPUT otherwise)."""
    if input.size < 0:
        raise BadUserInput(f"size must not be negative, not {input.size}")
    return checked_name(input.name), _content_hash(input.content_hash), _media_type(input.media_type)


async def _object_sizes(ctx: Context, keys: list[str]) -> list[int | None]:
    """The objects' sizes (None: missing); a storage error is raised as it is (not in an exception
    group). A folder store stats them all in one worker-thread call (a stat costs less than the hop);
    a remote one sends its HEAD requests all at once."""
    storage = ctx.services.storage
    if storage.kind == "FILE":
        return await ctx.services.run_io(lambda: [storage.size_of(key) for key in keys])
    sizes: list[int | BaseException | None] = [None] * len(keys)

    async def size_of(i: int) -> None:
        try:
            sizes[i] = await ctx.services.run_io(storage.size_of, keys[i])
        except Exception as exc:
            sizes[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(keys)):
            tg.start_soon(size_of, i)
    for size in sizes:
        if isinstance(size, BaseException):
            raise size
    return cast("list[int | None]", sizes)


def _store_ids(inputs: list[FileInput], labels: list[str]) -> list[int]:
    ids = []
    for label, input in zip(labels, inputs, strict=True):
        with about_input(label):
            ids.append(parse_id(input.store, "store"))
    return ids


def _media_stores(
    found: dict[int, Any], inputs: list[FileInput], labels: list[str], ids: list[int], user: AuthUser
) -> list[Any]:
    """The inputs' unused MEDIA stores among ``found`` (rows by id), in input order, with the errors
    ``get_store`` gives, each named by its input's label."""
    stores = []
    for label, input, store_id in zip(labels, inputs, ids, strict=True):
        with about_input(label):
            store = owned(m.Store, found.get(store_id), input.store, user)
            stores.append(_unused(store_of_kind(store, input.store, "MEDIA"), input))
    return stores


def _check_size(key: str, size: int | None, input: FileInput) -> None:
    if size is None:
        raise BadUserInput(f"no object at {key}: upload the file's bytes before createFile")
    if size != input.size:
        raise BadUserInput(f"the object at {key} has {size} bytes, not {input.size}")


def _unused(store: Any, input: FileInput) -> Any:
    if store.populated:
        raise Conflict(f"store {input.store} already holds a file")
    return store


async def create_files(ctx: Context, user: AuthUser, inputs: list[FileInput]) -> list[Any]:
    """One ``File`` per input, all in one transaction (rows in input order, their columns as
    attributes); a bad input fails them all, named ``inputs[i]`` in a batch. The objects' sizes are
    checked (concurrently) before it."""
    if len(inputs) > MAX_FILES:
        raise BadUserInput(f"at most {MAX_FILES} files per request, not {len(inputs)}")
    labels = [f"inputs[{i}]: " if len(inputs) > 1 else "" for i in range(len(inputs))]
    seen: dict[str, int] = {}
    values = []
    for i, input in enumerate(inputs):
        first = seen.setdefault(str(input.store), i)
        if first != i:
            raise BadUserInput(f"inputs[{first}] and inputs[{i}] both use store {input.store}")
        with about_input(labels[i]):
            values.append(_checked_values(input))
    ids = _store_ids(inputs, labels)
    # One call (`Context.rows`: on SQLite one trip to a reading thread), not the async ORM.
    (found,) = await ctx.rows([(rows_by_id(m.Store), {"ids": sorted(set(ids))})])
    stores = _media_stores({store.id: store for store in found}, inputs, labels, ids, user)
    keys = [f"{store.key}/{FILE_KEY}" for store in stores]
    for label, input, key, size in zip(labels, inputs, keys, await _object_sizes(ctx, keys), strict=True):
        with about_input(label):
            _check_size(key, size, input)
    paths = [ctx.services.storage.path_of(key) for key in keys]
    rows = await ctx.services.write(
        lambda tx: _record_files(tx.session, inputs, labels, ids, values, paths, user)
    )
    # The answer's stores as this transaction left them, from the rows read above, not from one more read.
    recorded = [
        SimpleNamespace(**{**store._asdict(), "populated": True, "path": path})
        for store, path in zip(stores, paths, strict=True)
    ]
    ctx.loaders.store.prime_many({store.id: store for store in recorded})
    return rows


def _record_files(
    s: Session,
    inputs: list[FileInput],
    labels: list[str],
    ids: list[int],
    values: list[tuple[str, str, str]],
    paths: list[str],
    user: AuthUser,
) -> list[Any]:
    """The write transaction of `create_files`: one statement per table, whatever the batch's size."""
    # Read again under the write lock: another request may have used a store since.
    found = s.execute(_STORE_CHECK.where(_STORES.c.id.in_(set(ids))))
    _media_stores({row.id: row for row in found}, inputs, labels, ids, user)
    s.execute(_FINISH_STORE, [{"b_id": i, "b_path": path} for i, path in zip(ids, paths, strict=True)])
    now = m.utcnow()
    file_values: list[dict[str, Any]] = [
        {
            "name": name,
            "store_id": store_id,
            "size": input.size,
            "content_hash": content_hash,
            "media_type": media_type,
            "creator_id": user.id,
            "tags": list(dict.fromkeys(input.tags)),
            "created_at": now,
        }
        for input, store_id, (name, content_hash, media_type) in zip(inputs, ids, values, strict=True)
    ]
    # Matched to their inputs by store (unique per file), not by RETURNING's order (see
    # _representation_create: asked for that order, SQLAlchemy sends SQLite a statement per row).
    id_of: dict[int, int] = dict(s.execute(_INSERT_FILES, file_values).all())
    # Plain objects (nothing here is flushed): an ORM one cost 30 times as much to make.
    rows = [SimpleNamespace(id=id_of[v["store_id"]], **v) for v in file_values]
    insert_tag_rows(s, rows, kind=KIND_NAMES[m.FileRow])
    for field, model, table, column in _LINKS:
        wanted = [list(dict.fromkeys(getattr(input, field) or [])) for input in inputs]
        if not any(wanted):
            continue
        link_ids = []
        for label, raws in zip(labels, wanted, strict=True):
            with about_input(label):
                link_ids.append([parse_id(raw, KIND_NAMES[model]) for raw in raws])
        owners: dict[int, int] = dict(
            s.execute(
                select(model.id, model.creator_id).where(model.id.in_({i for ids in link_ids for i in ids}))
            ).all()
        )
        links = []
        for label, row, raws, numbers in zip(labels, rows, wanted, link_ids, strict=True):
            with about_input(label):
                for raw, number in zip(raws, numbers, strict=True):
                    if number not in owners or not user.can_see(owners[number]):
                        raise NotFound(f"no {KIND_NAMES[model]} with id {raw}")
                    links.append({"file_id": row.id, column: number})
        s.execute(insert(table), links)
    return rows


_STORES = cast(Table, m.Store.__table__)
_STORE_CHECK = select(_STORES.c.id, _STORES.c.kind, _STORES.c.populated, _STORES.c.creator_id)
_FINISH_STORE = (
    update(_STORES).where(_STORES.c.id == bindparam("b_id")).values(populated=True, path=bindparam("b_path"))
)
_FILES = cast(Table, m.FileRow.__table__)
_INSERT_FILES = insert(_FILES).returning(_FILES.c.store_id, _FILES.c.id)
