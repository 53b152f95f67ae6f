"""One store's objects, reached through obstore's SYNC API with credentials from a `GrantProvider`.

Every method here blocks: call them from worker threads (``anyio.to_thread.run_sync``) or from dask
tasks, never from the event loop. obstore's async API is avoided on purpose (it needs an asyncio loop,
so it fails under trio, and it made processes abort at exit).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import LocalStore, S3Store

from mikro._exceptions import GrantError, StorageError
from mikro.datalayer._grant import GrantProvider, StorageGrant

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Credential
    from typing_extensions import Buffer

__all__ = ["GrantedStore", "StoreStats"]

T = TypeVar("T")

# obstore raises the builtin FileNotFoundError for a missing object (its own NotFoundError is kept here in
# case a store type raises that instead).
_MISSING = (NotFoundError, FileNotFoundError)

#: Refresh a grant this long before it expires (capped to a quarter of the grant's lifetime, so short
#: test grants still get refreshed before they run out rather than on every request).
REFRESH_MARGIN_SECONDS = 60.0


class StoreStats:
    """Bytes and requests that went through one `GrantedStore` (thread-safe counters)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.bytes_written = 0
        self.gets = 0
        self.puts = 0
        self.grant_refreshes = 0

    def _add(
        self, *, read: int = 0, written: int = 0, gets: int = 0, puts: int = 0, refreshes: int = 0
    ) -> None:
        with self._lock:
            self.bytes_read += read
            self.bytes_written += written
            self.gets += gets
            self.puts += puts
            self.grant_refreshes += refreshes

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
                "gets": self.gets,
                "puts": self.puts,
                "grant_refreshes": self.grant_refreshes,
            }


class GrantedStore:
    """The objects under one grant's prefix; the obstore store is built lazily on first use.

    Keys are relative to the grant's prefix (``"zarr.json"``, ``"0/c/0/0/0"``). The grant is refreshed
    through the provider shortly before it expires (S3: via obstore's ``credential_provider``, so even a
    long request sequence keeps valid credentials). A provider that fails (grant revoked, server gone)
    turns into `mikro.GrantError`; other store failures into `mikro.StorageError`.
    """

    def __init__(self, provider: GrantProvider, *, grant: StorageGrant | None = None) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._grant = grant
        self._grant_lifetime = self._lifetime(grant) if grant is not None else None
        self._store: LocalStore | S3Store | None = None
        self._provider_error: BaseException | None = None
        self.stats = StoreStats()

    # -- grants -------------------------------------------------------------------------------------

    @staticmethod
    def _lifetime(grant: StorageGrant) -> float:
        return max(grant.seconds_left(), 0.0)

    def _margin(self) -> float:
        lifetime = self._grant_lifetime or REFRESH_MARGIN_SECONDS * 4
        return min(REFRESH_MARGIN_SECONDS, lifetime / 4)

    def _fetch_grant(self) -> StorageGrant:
        try:
            grant = self._provider()
        except GrantError as exc:
            self._provider_error = exc
            raise
        except Exception as exc:
            self._provider_error = exc
            raise GrantError(f"could not obtain a storage grant: {exc}") from exc
        self._provider_error = None
        self._grant_lifetime = self._lifetime(grant)
        self.stats._add(refreshes=1)
        return grant

    def current_grant(self) -> StorageGrant:
        """The grant in use, refreshed through the provider if it is about to expire (blocking)."""
        with self._lock:
            if self._grant is None or self._grant.seconds_left() < self._margin():
                self._grant = self._fetch_grant()
            return self._grant

    def _credentials(self) -> S3Credential:
        # Called by obstore (in the requesting thread) before signing. obstore asks again on every request
        # once less than a few minutes remain, so the answer comes from our cached grant unless that is
        # itself about to run out.
        grant = self.current_grant()
        if grant.access_key_id is None or grant.secret_access_key is None:
            raise GrantError(f"the grant for store {grant.store_id} carries no S3 credentials")
        return {
            "access_key_id": grant.access_key_id,
            "secret_access_key": grant.secret_access_key,
            "token": grant.session_token,
            "expires_at": grant.expires_at,
        }

    def _obstore(self) -> LocalStore | S3Store:
        grant = self.current_grant()
        with self._lock:
            if self._store is None:
                self._store = self._build(grant)
            return self._store

    def _build(self, grant: StorageGrant) -> LocalStore | S3Store:
        if grant.kind == "file":
            return LocalStore(prefix=grant.path, mkdir=grant.write)
        if grant.kind == "s3":
            client_options: ClientConfig = {}
            if grant.endpoint and grant.endpoint.startswith("http://"):
                client_options["allow_http"] = True
            kwargs: dict[str, Any] = {}
            if grant.endpoint:
                kwargs["endpoint"] = grant.endpoint
            if grant.region:
                kwargs["region"] = grant.region
            if grant.access_key_id is None:
                kwargs["skip_signature"] = True
            else:
                kwargs["credential_provider"] = self._credentials
            return S3Store(
                grant.bucket,
                prefix=grant.prefix.strip("/") or None,
                client_options=client_options,
                virtual_hosted_style_request=False,
                # Signing a body hash costs a SHA-256 pass over every shard; TLS already protects it.
                unsigned_payload=True,
                **kwargs,
            )
        raise StorageError(f"unknown store kind {grant.kind!r} in grant for store {grant.store_id}")

    # -- I/O ----------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[LocalStore | S3Store], T]) -> T:
        # _obstore() also refreshes the grant when due: a folder store has no credentials to refresh but
        # still honours expiry and revocation of its grant this way.
        store = self._obstore()
        try:
            return fn(store)
        except (UnauthenticatedError, PermissionDeniedError, PermissionError) as exc:
            if isinstance(exc, PermissionError) and isinstance(store, LocalStore):
                raise StorageError(f"{what} failed: {exc}") from exc
            if self._provider_error is not None:
                raise GrantError(
                    f"{what}: the storage grant could not be refreshed: {self._provider_error}"
                ) from self._provider_error
            raise GrantError(
                f"{what}: the store refused the grant's credentials ({type(exc).__name__})"
            ) from exc
        except (BaseError, OSError) as exc:
            if self._provider_error is not None:
                raise GrantError(
                    f"{what}: the storage grant could not be refreshed: {self._provider_error}"
                ) from self._provider_error
            raise StorageError(f"{what} failed: {exc}") from exc

    def put(self, key: str, data: bytes | memoryview) -> None:
        def run(store: LocalStore | S3Store) -> None:
            obstore.put(store, key, data, use_multipart=False)

        self._call(f"writing {key!r}", run)
        self.stats._add(written=len(data), puts=1)

    def get(self, key: str, *, missing_ok: bool = False) -> bytes | None:
        """The whole object, or None if it does not exist and ``missing_ok``."""

        def run(store: LocalStore | S3Store) -> bytes | None:
            try:
                return bytes(obstore.get(store, key).bytes())
            except _MISSING:
                if missing_ok:
                    return None
                raise

        data = self._call(f"reading {key!r}", run)
        self.stats._add(read=len(data) if data is not None else 0, gets=1)
        return data

    def get_range(self, key: str, start: int, end: int, *, missing_ok: bool = False) -> Buffer | None:
        """Bytes ``[start, end)`` of one object (a buffer, not copied into ``bytes``)."""

        def run(store: LocalStore | S3Store) -> Buffer | None:
            try:
                return obstore.get_range(store, key, start=start, end=end)
            except _MISSING:
                if missing_ok:
                    return None
                raise

        buffer = self._call(f"reading {key!r}", run)
        self.stats._add(read=memoryview(buffer).nbytes if buffer is not None else 0, gets=1)
        return buffer

    def get_suffix(self, key: str, length: int, *, missing_ok: bool = False) -> bytes | None:
        """The last ``length`` bytes of one object (a shard index lives there)."""

        def run(store: LocalStore | S3Store) -> bytes | None:
            try:
                return bytes(obstore.get(store, key, options={"range": {"suffix": length}}).bytes())
            except _MISSING:
                if missing_ok:
                    return None
                raise

        data = self._call(f"reading {key!r}", run)
        self.stats._add(read=len(data) if data is not None else 0, gets=1)
        return data

    def delete(self, keys: list[str]) -> None:
        def run(store: LocalStore | S3Store) -> None:
            for key in keys:
                with contextlib.suppress(*_MISSING):
                    obstore.delete(store, key)

        self._call("deleting objects", run)

    def list_keys(self) -> list[str]:
        def run(store: LocalStore | S3Store) -> list[str]:
            return [meta["path"] for batch in obstore.list(store) for meta in batch]

        return self._call("listing objects", run)

    def seconds_left(self) -> float | None:
        """Seconds until the grant in hand expires (None before the first use)."""
        with self._lock:
            return self._grant.seconds_left(dt.datetime.now(dt.UTC)) if self._grant else None
