"""The data-plane mutations: reserve a prefix and get grants for it, and finish an upload."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import strawberry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._context import Context
from mikro.server._crud import begin_mutation, get_owned, get_store
from mikro.server._errors import ApiError, Conflict
from mikro.server._objects import GrantData
from mikro.server._zarr_meta import read_array_info

__all__ = ["DataPlaneMutation"]

logger = logging.getLogger("mikro.server")


def _grant(store: m.Store, data: GrantData) -> t.Grant:
    credentials = None
    if data.access_key_id is not None and data.secret_access_key is not None:
        credentials = t.Credentials(
            access_key_id=data.access_key_id,
            secret_access_key=data.secret_access_key,
            session_token=data.session_token,
            expiration=data.credentials_expiration or data.expires_at,
        )
    return t.Grant(
        store_id=strawberry.ID(str(store.id)),
        upload_kind=t.UploadKind(store.kind),
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
    storage = ctx.services.storage
    session_name = f"mikro-{user.id}-{uuid.uuid4().hex[:16]}"
    try:
        return await ctx.services.run_io(lambda: storage.grant(key, write=write, session_name=session_name))
    except ApiError:
        raise
    except Exception as e:
        logger.exception("could not issue a grant for %s", key)
        raise ApiError(f"could not obtain storage credentials: {type(e).__name__}") from None


def _record_grant(session: AsyncSession, store_id: int, user: AuthUser, data: GrantData) -> None:
    session.add(
        m.GrantRecord(
            store_id=store_id,
            user_id=user.id,
            write=data.write,
            kind=data.kind,
            policy=data.policy,
            expires_at=data.expires_at,
        )
    )
    if data.policy is not None:
        logger.info("grant for store %s (write=%s) with policy %s", store_id, data.write, data.policy)


@strawberry.type
class DataPlaneMutation:
    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Reserve a fresh key prefix and return a write grant for it."
    )
    async def request_upload(self, info: Info[Any, Any], kind: t.UploadKind = t.UploadKind.ZARR) -> t.Grant:
        ctx, user = begin_mutation(info)
        storage = ctx.services.storage
        key = storage.new_key(kind.value)
        await ctx.services.run_io(storage.prepare, key)
        data = await _issue_grant(ctx, user, key, write=True)
        async with ctx.services.transaction() as tx:
            store = m.Store(
                kind=kind.value, bucket=storage.bucket, key=key, path=storage.path_of(key), creator_id=user.id
            )
            tx.session.add(store)
            await tx.session.flush()
            _record_grant(tx.session, store.id, user, data)
        return _grant(store, data)

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Check that the zarr metadata is in place and record shape, dtype, chunks and "
        "dimension names."
    )
    async def finish_upload(self, info: Info[Any, Any], store: strawberry.ID) -> t.ZarrStore:
        ctx, user = begin_mutation(info)
        async with ctx.services.db.read() as session:
            row = await get_store(session, store, user, "ZARR")
            used = await session.scalar(select(func.count()).where(m.Representation.store_id == row.id))
        if used:
            raise Conflict(f"store {store} already holds a representation; it cannot change")
        storage = ctx.services.storage
        array = await ctx.services.run_io(read_array_info, storage.read, row.key)
        async with ctx.services.transaction() as tx:
            row = await get_store(tx.session, store, user, "ZARR")
            row.shape = array.shape
            row.chunks = array.chunks
            row.shards = array.shards
            row.dtype = array.dtype
            row.dimension_names = array.dimension_names
            row.path = storage.path_of(array.key)
            row.populated = True
        return t.ZarrStore.from_row(row)

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="A grant to read a store (or, with write, to keep writing an unfinished upload)."
    )
    async def request_access(
        self, info: Info[Any, Any], store: strawberry.ID, write: bool = False
    ) -> t.Grant:
        ctx, user = begin_mutation(info)
        async with ctx.services.db.read() as session:
            row = await get_owned(session, m.Store, store, user)
        if write and row.populated:
            raise Conflict(f"store {store} is finished and read-only")
        if not write and not row.populated:
            raise Conflict(f"store {store} is not finished yet: nothing to read")
        data = await _issue_grant(ctx, user, row.key, write=write)
        async with ctx.services.transaction() as tx:
            _record_grant(tx.session, row.id, user, data)
        return _grant(row, data)
