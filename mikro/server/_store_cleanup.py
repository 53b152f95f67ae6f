"""Deleting stores: their rows (with their grant records), then their objects after the commit.

Used when an object that owns stores is deleted, when a client gives back reservations it did not
use, and for abandoned uploads: reserved stores a dead client left behind, never finished. A deleted
store's prefix is swept once more after its write credentials have expired (``DeletedPrefix``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from mikro.server import _models as m

if TYPE_CHECKING:
    from mikro.server._services import Services

__all__ = ["collect_abandoned_uploads", "delete_objects", "delete_stores", "sweep_deleted_prefixes"]

logger = logging.getLogger("mikro.server")


def delete_stores(session: Session, store_ids: list[int]) -> list[str]:
    """Delete store rows (and their grant records); returns their keys, to delete the objects after
    commit. Synchronous (a write transaction's job; an async session's ``run_sync`` elsewhere)."""
    if not store_ids:
        return []
    keys = list(session.scalars(select(m.Store.key).where(m.Store.id.in_(store_ids))).all())
    session.execute(delete(m.GrantRecord).where(m.GrantRecord.store_id.in_(store_ids)))
    session.execute(delete(m.Store).where(m.Store.id.in_(store_ids)))
    if keys:
        session.execute(insert(m.DeletedPrefix), [{"key": key} for key in keys])
    return keys


async def delete_objects(services: Services, keys: list[str]) -> None:
    """Remove deleted stores' objects. Runs after the commit: a rolled-back delete keeps its pixels."""
    for key in keys:
        try:
            await services.run_io(services.storage.delete_prefix, key)
        except Exception:
            # The metadata is gone already; leftover objects are garbage, not an error for the caller.
            logger.exception("could not delete objects under %s", key)


async def sweep_deleted_prefixes(services: Services) -> int:
    """Delete again what lies under deleted stores' prefixes once no credential can write there any
    more; returns how many prefixes were swept."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=services.settings.credential_lifetime)
    async with services.db.read() as session:
        due = (
            await session.execute(
                select(m.DeletedPrefix.id, m.DeletedPrefix.key).where(m.DeletedPrefix.deleted_at < cutoff)
            )
        ).all()
    if not due:
        return 0
    await delete_objects(services, [key for _, key in due])
    async with services.db.write() as session:
        await session.execute(delete(m.DeletedPrefix).where(m.DeletedPrefix.id.in_([id_ for id_, _ in due])))
    logger.info("swept %d deleted prefixes", len(due))
    return len(due)


async def collect_abandoned_uploads(services: Services, older_than: float) -> int:
    """Delete stores reserved more than ``older_than`` seconds ago and never finished, with their objects.

    A client that died mid-upload (or never gave back its reservations) leaves such stores behind; a
    finished store, or one a table uses, is marked populated and never collected.
    """
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than)
    async with services.transaction() as tx:
        stale = select(m.Store.id).where(m.Store.populated.is_(False), m.Store.created_at < cutoff)
        keys = await tx.session.run_sync(delete_stores, list((await tx.session.scalars(stale)).all()))
    await delete_objects(services, keys)
    if keys:
        logger.info("collected %d abandoned uploads", len(keys))
    return len(keys)
