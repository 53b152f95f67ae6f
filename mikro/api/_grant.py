"""Storage grants as the server returns them, convertible to the datalayer's :class:`StorageGrant`."""

from __future__ import annotations

import datetime as dt

from pydantic import SecretStr

from mikro.api._base import MikroModel
from mikro.api._enums import StoreKind, UploadKind
from mikro.datalayer import StorageGrant

__all__ = ["Credentials", "Grant"]


class Credentials(MikroModel):
    """Temporary credentials; the secret parts print masked."""

    access_key_id: str
    secret_access_key: SecretStr
    session_token: SecretStr | None = None
    expiration: dt.datetime


class Grant(MikroModel):
    """Where and how to reach one store's objects; ``prefix`` is the only key prefix it allows."""

    store_id: str
    upload_kind: UploadKind
    kind: StoreKind
    endpoint: str | None = None
    region: str | None = None
    bucket: str
    prefix: str
    path: str
    write: bool
    credentials: Credentials | None = None
    expires_at: dt.datetime

    def to_storage_grant(self) -> StorageGrant:
        """The datalayer's view of this grant (what its obstore stores are built from)."""
        creds = self.credentials
        expires_at = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=dt.UTC)
        return StorageGrant(
            store_id=self.store_id,
            kind="s3" if self.kind is StoreKind.S3 else "file",
            bucket=self.bucket,
            prefix=self.prefix,
            path=self.path,
            write=self.write,
            expires_at=expires_at,
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=creds.access_key_id if creds else None,
            secret_access_key=creds.secret_access_key.get_secret_value() if creds else None,
            session_token=(
                creds.session_token.get_secret_value() if creds and creds.session_token is not None else None
            ),
        )
