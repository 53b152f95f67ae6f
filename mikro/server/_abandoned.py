"""Unfinished uploads nobody will finish: reserved stores a dead client left behind."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from mikro.server import _models as m

if TYPE_CHECKING:
    from mikro.server._services import Services

__all__ = ["collect_abandoned_uploads"]

logger = logging.getLogger("mikro.server")


async def collect_abandoned_uploads(services: Services, older_than: float) -> int:
    """Delete stores reserved more than ``older_than`` seconds ago and never finished, with their objects.

    A client that died mid-upload (or never gave back its reservations) leaves such stores behind; a
    finished store, or one a table or thumbnail uses, is marked populated and never collected.
    """
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than)
    async with services.transaction() as tx:
        rows = list(
            (
                await tx.session.execute(
                    select(m.Store.id, m.Store.key).where(
                        m.Store.populated.is_(False), m.Store.created_at < cutoff
                    )
                )
            ).all()
        )
        ids = [row.id for row in rows]
        if ids:
            await tx.session.execute(delete(m.GrantRecord).where(m.GrantRecord.store_id.in_(ids)))
            await tx.session.execute(delete(m.Store).where(m.Store.id.in_(ids)))
    for row in rows:
        try:
            await services.run_io(services.storage.delete_prefix, row.key)
        except Exception:
            logger.exception("could not delete objects under abandoned store %s", row.key)
    if rows:
        logger.info("collected %d abandoned uploads", len(rows))
    return len(rows)
