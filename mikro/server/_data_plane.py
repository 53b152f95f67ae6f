"""The data-plane mutations: reserve prefixes and get grants for them, finish an upload, give one back."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

import strawberry
from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._context import Context
from mikro.server._crud import begin_mutation, get_owned, get_store, owned, parse_id
from mikro.server._errors import ApiError, BadUserInput, Conflict
from mikro.server._objects import GrantData
from mikro.server._quota import check_quota
from mikro.server._services import Services, WriteTx, note_secrets
from mikro.server._store_cleanup import delete_objects, delete_stores
from mikro.server._zarr_meta import ArrayInfo, read_array_info

__all__ = [
    "SECRET_FIELDS",
    "DataPlaneMutation",
    "array_values",
    "issue_grant",
    "read_array",
    "record_array",
    "reissue_grant",
]

T = TypeVar("T")

logger = logging.getLogger("mikro.server")


#: The secret fields of a grant's credentials: (GrantData attribute, GraphQL field).
SECRET_FIELDS = (
    ("access_key_id", "accessKeyId"),
    ("secret_access_key", "secretAccessKey"),
    ("session_token", "sessionToken"),
)


def _grant(store: m.Store, data: GrantData) -> t.Grant:
    return _grant_for(store.id, store.kind, data)


def _grant_for(store_id: int, upload_kind: str, data: GrantData) -> t.Grant:
    credentials = None
    if data.access_key_id is not None and data.secret_access_key is not None:
        secrets = {getattr(data, a): name for a, name in SECRET_FIELDS if getattr(data, a)}
        note_secrets(store_id, data.write, secrets)
        credentials = t.Credentials(
            access_key_id=data.access_key_id,
            secret_access_key=data.secret_access_key,
            session_token=data.session_token,
            expiration=data.expires_at,
        )
    return t.Grant(
        store_id=strawberry.ID(str(store_id)),
        upload_kind=t.UploadKind(upload_kind),
        kind=t.StoreKind(data.kind),
        endpoint=data.endpoint,
        region=data.region,
        bucket=data.bucket,
        prefix=data.prefix,
        path=data.path,
        write=data.write,
        credentials=credentials,
        expires_at=data.expires_at,
    )


async def _issue_grant(ctx: Context, user: AuthUser, key: str, *, write: bool) -> GrantData:
    return await issue_grant(ctx.services, user, key, write=write)


async def issue_grant(services: Services, user: AuthUser, key: str, *, write: bool) -> GrantData:
    """Fresh credentials for ``key`` (also used to answer a repeated request without stored secrets)."""
    storage = services.storage
    return await _storage_call(
        services,
        key,
        lambda: storage.grant(key, write=write, session_name=_session_name(user), user_id=user.id),
    )


async def _storage_call(services: Services, key: str, fn: Callable[[], T]) -> T:
    try:
        return await services.run_io(fn)
    except ApiError:
        raise
    except Exception as e:
        logger.exception("could not issue a grant for %s", key)
        raise ApiError(f"could not obtain storage credentials: {type(e).__name__}") from None


def _session_name(user: AuthUser) -> str:
    return f"mikro-{user.id}-{uuid.uuid4().hex[:16]}"


async def read_array(ctx: Context, key: str) -> ArrayInfo:
    """The array metadata a finished upload must have in place under ``key`` (one object read)."""
    return await ctx.services.run_io(read_array_info, ctx.services.storage.read, key)


def array_values(ctx: Context, array: ArrayInfo) -> dict[str, Any]:
    """A finished store's columns: what its array holds; from now on it is read-only."""
    return {
        "shape": array.shape,
        "chunks": array.chunks,
        "shards": array.shards,
        "dtype": array.dtype,
        "dimension_names": array.dimension_names,
        "array_path": array.path,
        "levels": array.levels,
        "populated": True,
    }


def record_array(ctx: Context, row: m.Store, array: ArrayInfo) -> None:
    """Finish a store (an ORM row): record what its array holds."""
    for name, value in array_values(ctx, array).items():
        setattr(row, name, value)


def _record_grant(session: AsyncSession, store_id: int, user: AuthUser, data: GrantData) -> None:
    session.add(m.GrantRecord(**_grant_values(store_id, user, data)))


def _grant_values(store_id: int, user: AuthUser, data: GrantData) -> dict[str, Any]:
    """The row recording a grant."""
    if data.policy is not None:
        logger.debug("grant for store %s (write=%s) with policy %s", store_id, data.write, data.policy)
    return {
        "store_id": store_id,
        "user_id": user.id,
        "write": data.write,
        "kind": data.kind,
        "policy": data.policy,
        "expires_at": data.expires_at,
    }


async def reissue_grant(services: Services, user: AuthUser, store_id: int, write: bool) -> GrantData | None:
    """New credentials in place of ones an earlier answer carried (a repeated ``Idempotency-Key``
    request): None when the store is gone, or finished and the grant was to write."""
    async with services.db.read() as session:
        row = await session.get(m.Store, store_id)
    if row is None or not user.can_see(row.creator_id) or (write and row.populated):
        return None
    data = await issue_grant(services, user, row.key, write=write)
    async with services.transaction() as tx:
        _record_grant(tx.session, row.id, user, data)
    return data


#: Most stores one requestUploads may reserve (a plate's fields are thousands of small uploads).
MAX_RESERVED = 256


async def _reserve(ctx: Context, user: AuthUser, kind: t.UploadKind, count: int) -> list[t.Grant]:
    storage = ctx.services.storage

    def reserve() -> list[tuple[str, GrantData]]:
        made = []
        for _ in range(count):
            key, data = storage.new_upload(kind.value, user.id, session_name=_session_name(user))
            storage.prepare(key)
            made.append((key, data))
        return made

    reserved = await _storage_call(ctx.services, kind.value, reserve)
    # Core statements, one per table: the ORM's flush of a batch's objects cost more than the rows.
    stores = [
        {
            "kind": kind.value,
            "bucket": storage.bucket,
            "key": key,
            "path": storage.path_of(key),
            "creator_id": user.id,
        }
        for key, _ in reserved
    ]

    def record(tx: WriteTx) -> list[int]:
        found = tx.session.execute(_INSERT_STORES, stores)
        id_of: dict[str, int] = {key: store_id for key, store_id in found.all()}
        ids = [id_of[key] for key, _ in reserved]
        grants = [_grant_values(i, user, data) for i, (_, data) in zip(ids, reserved, strict=True)]
        tx.session.execute(insert(_GRANT_TABLE), grants)
        return ids

    ids = await ctx.services.write(record)
    return [_grant_for(i, kind.value, data) for i, (_, data) in zip(ids, reserved, strict=True)]


_STORE_TABLE = cast(Table, m.Store.__table__)
_GRANT_TABLE = cast(Table, m.GrantRecord.__table__)
# Rows are matched to their ids by their unique key. With ``sort_by_parameter_order`` SQLAlchemy
# cannot promise SQLite's RETURNING order for a multi-row INSERT and sends one statement per row (each
# a trip to the connection's thread); without it, one statement per batch.
_INSERT_STORES = insert(_STORE_TABLE).returning(_STORE_TABLE.c.key, _STORE_TABLE.c.id)
_STORE_CHECK = select(_STORE_TABLE.c.id, _STORE_TABLE.c.populated, _STORE_TABLE.c.creator_id)


@strawberry.type
class DataPlaneMutation:
    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Reserve a fresh key prefix and return a write grant for it."
    )
    async def request_upload(self, info: Info[Any, Any], kind: t.UploadKind = t.UploadKind.ZARR) -> t.Grant:
        ctx, user = begin_mutation(info)
        [grant] = await _reserve(ctx, user, kind, 1)
        return grant

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Reserve `count` fresh stores in one request, each with its write grant (at most "
        f"{MAX_RESERVED}); give back the ones left unused with releaseUploads."
    )
    async def request_uploads(
        self, info: Info[Any, Any], count: int, kind: t.UploadKind = t.UploadKind.ZARR
    ) -> list[t.Grant]:
        ctx, user = begin_mutation(info)
        if not 1 <= count <= MAX_RESERVED:
            raise BadUserInput(f"count must be between 1 and {MAX_RESERVED}, not {count}")
        return await _reserve(ctx, user, kind, count)

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Give back reserved stores that were never finished: they and anything written to "
        "them are deleted. Returns the ids released."
    )
    async def release_uploads(self, info: Info[Any, Any], stores: list[strawberry.ID]) -> list[strawberry.ID]:
        ctx, user = begin_mutation(info)
        wanted = dict.fromkeys(stores)
        ids = {raw: parse_id(raw, "store") for raw in wanted}

        def release(tx: WriteTx) -> list[str]:
            # One read for all of them (a session's ``get`` each was a statement each).
            found = tx.session.execute(_STORE_CHECK.where(_STORE_TABLE.c.id.in_(set(ids.values()))))
            rows: dict[int, Any] = {row.id: row for row in found}
            checked = [owned(m.Store, rows.get(ids[raw]), raw, user) for raw in wanted]
            finished = [str(row.id) for row in checked if row.populated]
            if finished:
                raise Conflict(f"stores {', '.join(finished)} are finished and cannot be released")
            return delete_stores(tx.session, [row.id for row in checked])

        keys = await ctx.services.write(release)
        await delete_objects(ctx.services, keys)
        return [strawberry.ID(str(ids[raw])) for raw in wanted]

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Check that the zarr metadata is in place and record shape, dtype, chunks and "
        "dimension names."
    )
    async def finish_upload(self, info: Info[Any, Any], store: strawberry.ID) -> t.ZarrStore:
        ctx, user = begin_mutation(info)
        async with ctx.read() as session:
            row = await get_store(session, store, user, "ZARR")
            used = await session.scalar(select(func.count()).where(m.Representation.store_id == row.id))
        if used:
            raise Conflict(f"store {store} already holds a representation; it cannot change")
        array = await read_array(ctx, row.key)
        async with ctx.services.transaction() as tx:
            row = await get_store(tx.session, store, user, "ZARR")
            if not row.populated:
                await tx.session.run_sync(check_quota, ctx.services.settings, user.id, [array])
            record_array(ctx, row, array)
        return t.ZarrStore.from_row(row)

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="A grant to read a store (or, with write, to keep writing an unfinished upload)."
    )
    async def request_access(
        self, info: Info[Any, Any], store: strawberry.ID, write: bool = False
    ) -> t.Grant:
        ctx, user = begin_mutation(info)
        async with ctx.read() as session:
            row = await get_owned(session, m.Store, store, user)
        if write and row.populated:
            raise Conflict(f"store {store} is finished and read-only")
        if not write and not row.populated:
            raise Conflict(f"store {store} is not finished yet: nothing to read")
        data = await _issue_grant(ctx, user, row.key, write=write)
        async with ctx.services.transaction() as tx:
            _record_grant(tx.session, row.id, user, data)
        return _grant(row, data)
