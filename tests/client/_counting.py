"""What a session sent and what it left on the server, for tests of request batching."""

from __future__ import annotations

import collections
from typing import Any

import mikro
from tests.server._helpers import db_rows

__all__ = ["count_operations", "unfinished_zarr_stores"]


def count_operations(m: mikro.Mikro) -> collections.Counter[str]:
    """Count the operations the session sends (they still go to the real server)."""
    seen: collections.Counter[str] = collections.Counter()
    execute, validated = m.transport.execute, m.transport.execute_validated

    async def counting(document: str, variables: Any = None, **kwargs: Any) -> dict[str, Any]:
        seen[kwargs.get("operation_name") or "?"] += 1
        return await execute(document, variables, **kwargs)

    async def counting_validated(document: str, *args: Any, **kwargs: Any) -> Any:
        seen[kwargs.get("operation_name") or "?"] += 1
        return await validated(document, *args, **kwargs)

    m.transport.execute = counting  # type: ignore[method-assign]
    m.transport.execute_validated = counting_validated  # type: ignore[method-assign]
    return seen


def unfinished_zarr_stores(server: Any, username: str) -> list[tuple[Any, ...]]:
    return db_rows(
        server.database_path,
        "select s.id from stores s join users u on u.id = s.creator_id "
        "where u.username = ? and s.kind = 'ZARR' and s.populated = 0",
        username,
    )
