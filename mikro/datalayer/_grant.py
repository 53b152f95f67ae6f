"""What the server hands out to reach a store: the datalayer's view of a `Grant` (no GraphQL here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["GrantProvider", "StorageGrant"]


@dataclass(frozen=True)
class StorageGrant:
    """Where one store's objects are and the (temporary) credentials to reach them.

    ``kind == "file"``: ``path`` is an absolute local directory holding the store's objects.
    ``kind == "s3"``: objects live under ``s3://{bucket}/{prefix}/`` at ``endpoint`` and the credentials
    are scoped to that prefix by the server.
    """

    store_id: str
    kind: Literal["file", "s3"]
    bucket: str
    prefix: str
    path: str
    write: bool
    expires_at: dt.datetime
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    def seconds_left(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (self.expires_at - now).total_seconds()


#: A blocking, thread-safe callable returning a fresh grant for one store. The datalayer calls it from
#: worker threads (never from the event loop) whenever the grant it holds is about to expire.
GrantProvider = Callable[[], StorageGrant]
