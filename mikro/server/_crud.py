"""Shared pieces of the resolvers: id parsing, ownership checks, filters, pagination, tags, limits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
from collections.abc import Sequence
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import Select, and_, bindparam, delete, exists, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server._auth import AuthUser
from mikro.server._bounds import MAX_TAGS, check_tags
from mikro.server._context import Context, context_of
from mikro.server._errors import BadUserInput, NotFound
from mikro.server._inputs import BaseFilter, OffsetPaginationInput
from mikro.server._sqlite import reused

__all__ = [
    "apply_base_filter",
    "begin_mutation",
    "check_strings",
    "get_owned",
    "get_store",
    "get_visible_row",
    "owned",
    "page_query",
    "parse_id",
    "parse_ids",
    "replace_tags",
    "rows_by_id",
    "store_of_kind",
    "visible_row",
    "visible_row_statement",
    "visible_to",
]

M = TypeVar("M")

# Names used in `object_tags.kind` and in error messages.
KIND_NAMES: dict[type[Any], str] = {
    m.Sample: "sample",
    m.Experiment: "experiment",
    m.Dataset: "dataset",
    m.Representation: "representation",
    m.Roi: "roi",
    m.Metric: "metric",
    m.TableRow: "table",
    m.Thumbnail: "thumbnail",
    m.Store: "store",
    m.FileRow: "file",
}


# Ids are 64-bit signed integers in the database: a larger number would overflow the query itself.
_MAX_ID = 2**63 - 1


def parse_id(value: Any, what: str = "id") -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise BadUserInput(f"{what} {value!r} is not a valid id") from None
    if not 1 <= number <= _MAX_ID:
        raise NotFound(f"no {what} with id {value}")
    return number


def parse_ids(values: Sequence[Any], what: str = "id") -> list[int]:
    return [parse_id(v, what) for v in values]


async def get_owned(
    session: AsyncSession, model: type[M], raw_id: Any, user: AuthUser, *, parent: bool = False
) -> M:
    """The object, if it exists and belongs to the caller (or the caller is admin); else NOT_FOUND, the
    same error for another user's object as for none, so that ids reveal nothing of other users.

    ``parent``: the object is what a new row will refer to. On PostgreSQL its row is then locked until
    commit (``FOR NO KEY UPDATE``: it still may be read, and its other children written), so that a
    delete of it waits in a fair queue with such writers. Without it, the writers' own foreign-key
    checks (``FOR KEY SHARE``, which never wait for a queued delete) starved a delete for as long as
    they kept coming (15 s under four writers in a loop).
    """
    lock = {"key_share": True} if parent else None
    obj = await session.get(model, parse_id(raw_id, KIND_NAMES[model]), with_for_update=lock)
    return owned(model, obj, raw_id, user)


def owned(model: type[M], obj: M | None, raw_id: Any, user: AuthUser) -> M:
    """``obj`` (``raw_id``'s row, or None) if the caller may change it; else `get_owned`'s NOT_FOUND."""
    if obj is None or not user.can_see(obj.creator_id):  # type: ignore[attr-defined]
        raise NotFound(f"no {KIND_NAMES[model]} with id {raw_id}")
    return obj


@functools.cache
def _row_by_id(model: Any) -> Select[Any]:
    table = model.__table__
    return reused(select(*m.listed_columns(model)).where(table.c.id == bindparam("id")))


@functools.cache
def rows_by_id(model: Any) -> Select[Any]:
    """``model``'s rows (listed columns) whose id is one of the parameter ``ids``; built once (see
    `reused`), to read with `Context.rows`."""
    table = model.__table__
    return reused(select(*m.listed_columns(model)).where(table.c.id.in_(bindparam("ids", expanding=True))))


async def get_visible_row(session: AsyncSession, model: Any, raw_id: Any, user: AuthUser) -> Any:
    """``get_owned`` for reading: the object's row (plain columns, no ORM object), same errors."""
    query, params = visible_row_statement(model, raw_id)
    return visible_row(model, raw_id, user, (await session.execute(query, params)).all())


def visible_row_statement(model: Any, raw_id: Any) -> tuple[Select[Any], dict[str, Any]]:
    """The statement `get_visible_row` reads (to read it with others, then check it with `visible_row`)."""
    return _row_by_id(model), {"id": parse_id(raw_id, KIND_NAMES[model])}


def visible_row(model: Any, raw_id: Any, user: AuthUser, rows: Sequence[Any]) -> Any:
    """The row of `visible_row_statement`'s ``rows`` if the user may see it; else NOT_FOUND."""
    if not rows or not user.can_see(rows[0].creator_id):
        raise NotFound(f"no {KIND_NAMES[model]} with id {raw_id}")
    return rows[0]


def visible_to(model: type[Any], user: AuthUser) -> Select[Any]:
    """Rows (plain columns, as ``page_query`` reads them) of ``model`` the user may see."""
    query = select(*m.listed_columns(model))
    if not user.is_admin:
        query = query.where(model.creator_id == user.id)
    return query


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def apply_base_filter(
    query: Select[Any], model: type[Any], flt: BaseFilter | None, *, search_column: Any = None
) -> Select[Any]:
    if flt is None:
        return query
    if flt.ids is not None:
        query = query.where(model.id.in_(parse_ids(flt.ids)))
    if flt.search is not None:
        column = search_column if search_column is not None else getattr(model, "name", None)
        if column is None:
            raise BadUserInput(f"{KIND_NAMES[model]}s have no name to search")
        query = query.where(column.ilike(f"%{_like_escape(flt.search)}%", escape="\\"))
    if flt.tags:
        if not hasattr(model, "tags"):
            raise BadUserInput(f"{KIND_NAMES[model]}s have no tags")
        kind = KIND_NAMES[model]
        for tag in set(flt.tags):
            query = query.where(
                exists().where(
                    and_(m.ObjectTag.kind == kind, m.ObjectTag.object_id == model.id, m.ObjectTag.tag == tag)
                )
            )
    if flt.created_after is not None:
        query = query.where(model.created_at > _as_utc(flt.created_after))
    if flt.created_before is not None:
        query = query.where(model.created_at < _as_utc(flt.created_before))
    return query


def page_query(
    query: Select[Any], model: type[Any], pagination: OffsetPaginationInput | None, max_page_size: int
) -> Select[Any]:
    """``query`` narrowed to one page (checked: BAD_USER_INPUT), ordered by id."""
    page = pagination or OffsetPaginationInput()
    if page.offset < 0:
        raise BadUserInput("pagination.offset must not be negative")
    if page.limit < 0:
        raise BadUserInput("pagination.limit must not be negative")
    if page.limit > max_page_size:
        raise BadUserInput(f"pagination.limit must be at most {max_page_size}")
    return query.order_by(model.id).offset(page.offset).limit(page.limit)


async def replace_tags(session: AsyncSession, obj: Any, tags: list[str]) -> None:
    """Set ``obj.tags`` (order kept, duplicates dropped) and its rows in ``object_tags``."""
    unique = list(dict.fromkeys(tags))
    kind = KIND_NAMES[type(obj)]
    # An object not yet in the database has no tag rows to delete (deleting an object drops its tags).
    state = sa_inspect(obj)
    is_new = state.pending or state.transient
    obj.tags = unique
    await session.flush()
    if not is_new:
        await session.execute(
            delete(m.ObjectTag).where(m.ObjectTag.kind == kind, m.ObjectTag.object_id == obj.id)
        )
    await session.run_sync(insert_tag_rows, [obj])


def insert_tag_rows(session: Session, objs: Sequence[Any], *, kind: str | None = None) -> None:
    """Write the ``object_tags`` rows of flushed objects that have none yet, from their ``tags`` (in a
    write transaction's job; an async session's ``run_sync`` elsewhere). ``kind``: the objects' (see
    `KIND_NAMES`), for objects that are not ORM ones."""
    values = [
        {"kind": kind or KIND_NAMES[type(obj)], "object_id": obj.id, "tag": tag}
        for obj in objs
        for tag in obj.tags
    ]
    if values:
        session.execute(insert(m.ObjectTag), values)


async def drop_tags(session: AsyncSession, model: type[Any], ids: Sequence[int]) -> None:
    if ids:
        await session.execute(
            delete(m.ObjectTag).where(m.ObjectTag.kind == KIND_NAMES[model], m.ObjectTag.object_id.in_(ids))
        )


def check_strings(value: Any, limit: int, where: str = "input") -> None:
    """Refuse any string longer than ``limit`` anywhere in an input (fields, lists, JSON values), and
    more tags than ``MAX_TAGS`` on any object."""
    _check_strings(value, limit, (None, where))


# Where a value sits in the input, built only when an error names it: (the parent's path, this step).
# A batch of a hundred images is tens of thousands of values, and formatting each one's path cost more
# than checking it.
_Path: TypeAlias = "tuple[_Path | None, str]"
_SCALARS = (int, float, bool, type(None))


def _where(path: _Path) -> str:
    parts = []
    step: _Path | None = path
    while step is not None:
        step, part = step
        parts.append(part)
    return "".join(reversed(parts))


_FIELD_NAMES: dict[type[Any], tuple[str, ...] | None] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...] | None:
    """The fields of a dataclass type, or None for any other type (kept per type)."""
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        _FIELD_NAMES[cls] = names
        return names


def _check_strings(value: Any, limit: int, path: _Path) -> None:
    kind = type(value)
    if kind is str:
        if len(value) > limit:
            raise BadUserInput(f"{_where(path)} is longer than {limit} characters")
    elif kind in _SCALARS or isinstance(value, enum.Enum):
        return
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k, limit, (path, " key"))
            _check_strings(v, limit, (path, f".{k}"))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_strings(v, limit, (path, f"[{i}]"))
    elif (names := _field_names(kind)) is not None:
        for name in names:
            field = getattr(value, name)
            if name == "tags" and field is not None and len(field) > MAX_TAGS:
                check_tags(field, f"{_where(path)}.tags")
            _check_strings(field, limit, (path, f".{name}"))
    elif isinstance(value, str):
        _check_strings(str(value), limit, path)


def begin_mutation(info: Info[Any, Any], payload: Any = None) -> tuple[Context, AuthUser]:
    """The context and caller of a mutation, after checking every string of its input."""
    ctx = context_of(info)
    user = ctx.require_user()
    if payload is not None:
        check_strings(payload, ctx.services.settings.max_string_length)
    return ctx, user


async def get_store(session: AsyncSession, raw_id: Any, user: AuthUser, kind: str) -> m.Store:
    """The caller's store of ``kind`` (ZARR, PARQUET or MEDIA)."""
    return store_of_kind(await get_owned(session, m.Store, raw_id, user), raw_id, kind)


def store_of_kind(store: m.Store, raw_id: Any, kind: str) -> m.Store:
    if store.kind != kind:
        raise BadUserInput(f"store {raw_id} is a {store.kind} store, not {kind}")
    return store
