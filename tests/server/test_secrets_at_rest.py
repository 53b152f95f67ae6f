"""Nothing secret rests in the clear: the data dir is private, the database and token files 0600, and
an ``Idempotency-Key`` answer is stored without the credentials it carried (a replay gets new ones)."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server._helpers import Api, db_rows
from tests.server.test_s3 import _put

pytestmark = pytest.mark.anyio

# Aliased, so that only finding the secrets by value keeps them out of the record.
UPLOADS = """mutation { requestUploads(count: 2) { id: storeId bucket endpoint region prefix
    c: credentials { a: accessKeyId s: secretAccessKey t: sessionToken } } }"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_and_secrets_are_private(mikro_server: Any) -> None:
    data_dir = Path(mikro_server.data_dir)
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "admin-token") == 0o600
    for suffix in ("", "-wal", "-shm"):
        database = Path(f"{mikro_server.database_path}{suffix}")
        if database.exists():
            assert _mode(database) == 0o600, database


async def test_stored_answer_holds_no_credentials(mikro_server_s3: Any, http: httpx.AsyncClient) -> None:
    api = Api(http, mikro_server_s3.url, mikro_server_s3.add_user("grants"))
    key = uuid.uuid4().hex
    first = await api.post(UPLOADS, headers={"Idempotency-Key": key})
    grants = first.json()["data"]["requestUploads"]
    secrets = [g["c"][field] for g in grants for field in ("s", "t")]
    assert all(secrets)

    [(stored,)] = db_rows(
        mikro_server_s3.database_path, "select response from idempotency_keys where key = ?", key
    )
    assert not any(secret in stored for secret in secrets)

    again = await api.post(UPLOADS, headers={"Idempotency-Key": key})
    assert again.headers.get("idempotent-replayed") == "true"
    replayed = again.json()["data"]["requestUploads"]
    assert [g["id"] for g in replayed] == [g["id"] for g in grants]
    for grant in replayed:
        # The re-issued credentials write to the store's prefix, as the first ones did.
        creds = grant["c"]
        put_grant = {**grant, "credentials": {"accessKeyId": creds["a"], "secretAccessKey": creds["s"]}}
        put_grant["credentials"]["sessionToken"] = creds["t"]
        _put(put_grant, "zarr.json", b"{}")
