"""What an ingest asks about its user's source fingerprints besides `sourcesIngested`."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import exists, select
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server._context import context_of

__all__ = ["FingerprintQuery"]

#: How fingerprints are spelled since BLAKE3; one without it is a bare SHA-256 hex of mikro before.
CURRENT_PREFIX = "blake3:"


@strawberry.type
class FingerprintQuery:
    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Whether any of the caller's images records its source fingerprint the way mikro did "
        "before BLAKE3 (a bare SHA-256 hex digest, no `blake3:` prefix): an ingest then computes that "
        "spelling too, so that files ingested before are found and not ingested twice."
    )
    async def legacy_source_fingerprints(self, info: Info[Any, Any]) -> bool:
        ctx = context_of(info)
        user = ctx.require_user()
        fp = m.Representation.source_fingerprint
        # A pattern, not a range beside the prefix: PostgreSQL's locale collations sort punctuation
        # their own way. The user's images are found by their creator's index; EXISTS stops at one.
        legacy = fp.is_not(None) & fp.not_like(f"{CURRENT_PREFIX}%")
        query = select(exists().where(m.Representation.creator_id == user.id, legacy))
        async with ctx.read() as session:
            return bool((await session.execute(query)).scalar())
