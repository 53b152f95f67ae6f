"""Grants for the datalayer tests: a tmp folder, and moto's S3 with STS credentials, both real stores."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mikro.datalayer import GrantedStore, StorageGrant
from tests.fixtures_servers import MotoS3


@dataclass
class CountingProvider:
    """A GrantProvider like the session's: a fresh grant per call, short-lived if asked; can be revoked."""

    make: Callable[[float], StorageGrant]
    ttl: float = 3600.0
    revoked: bool = False
    calls: int = 0
    issued: list[StorageGrant] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> StorageGrant:
        with self._lock:
            self.calls += 1
            if self.revoked:
                raise PermissionError("grant revoked by the server")
            grant = self.make(self.ttl)
            self.issued.append(grant)
            return grant


@pytest.fixture(params=["file", "s3"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_provider(
    store_kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> Callable[..., CountingProvider]:
    """``make_provider(ttl=...)`` → a provider for a fresh, empty prefix on the parametrized store kind."""

    def expires(ttl: float) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl)

    if store_kind == "file":

        def factory(ttl: float = 3600.0) -> CountingProvider:
            root = tmp_path / f"store-{uuid.uuid4().hex[:8]}"

            def make(ttl: float) -> StorageGrant:
                return StorageGrant(
                    store_id=root.name,
                    kind="file",
                    bucket="",
                    prefix=root.name,
                    path=str(root),
                    write=True,
                    expires_at=expires(ttl),
                )

            return CountingProvider(make, ttl)

        return factory

    moto: MotoS3 = request.getfixturevalue("moto_s3")
    sts = moto.client("sts")

    def factory(ttl: float = 3600.0) -> CountingProvider:
        prefix = f"tests/{uuid.uuid4().hex}"

        def make(ttl: float) -> StorageGrant:
            creds = sts.assume_role(RoleArn=moto.role_arn, RoleSessionName="mikro-test", DurationSeconds=900)[
                "Credentials"
            ]
            return StorageGrant(
                store_id=prefix,
                kind="s3",
                bucket=moto.bucket,
                prefix=prefix,
                path=f"s3://{moto.bucket}/{prefix}",
                write=True,
                expires_at=expires(ttl),
                endpoint=moto.endpoint_url,
                region=moto.region,
                access_key_id=creds["AccessKeyId"],
                secret_access_key=creds["SecretAccessKey"],
                session_token=creds["SessionToken"],
            )

        return CountingProvider(make, ttl)

    return factory


@pytest.fixture
def store(make_provider: Callable[..., CountingProvider]) -> GrantedStore:
    return GrantedStore(make_provider())


def download(store: GrantedStore, dest: Any) -> Any:
    """Copy every object of a store into a local folder (so plain zarr/xarray can open an S3 upload)."""
    for key in store.list_keys():
        data = store.get(key)
        assert data is not None
        target = dest / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest
