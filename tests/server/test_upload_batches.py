"""Upload stores share temporary credentials per user and batch: one STS call for many images."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.server.test_s3 import UPLOAD_S3

ACCESS = """mutation($s: ID!) { requestAccess(store: $s, write: true) {
  prefix credentials { accessKeyId } } }"""


def _upload(server: Any, token: str, kind: str = "ZARR") -> dict[str, Any]:
    body = server.query(UPLOAD_S3, {"k": kind}, token=token)
    return dict(body["data"]["requestUpload"])


def _resources(server: Any, store_id: str) -> list[str]:
    from tests.server._helpers import db_rows

    [(policy,)] = db_rows(
        server.database_path, "select policy from grants where store_id = ? order by id", store_id
    )
    return list(json.loads(policy)["Statement"][0]["Resource"])


def test_one_users_uploads_share_credentials_scoped_to_their_batch(server_factory: Any, moto_s3: Any) -> None:
    server = server_factory.start(**moto_s3.server_settings())
    alice, bob = server.add_user("alice"), server.add_user("bob")
    first, second = _upload(server, alice), _upload(server, alice)
    theirs = _upload(server, bob)
    table = _upload(server, alice, "PARQUET")

    assert first["prefix"] != second["prefix"]
    batch = first["prefix"].rsplit("/", 1)[0]
    assert second["prefix"].startswith(batch + "/")
    assert first["credentials"] == second["credentials"]
    assert _resources(server, first["storeId"]) == _resources(server, second["storeId"])
    assert _resources(server, first["storeId"]) == [f"arn:aws:s3:::{moto_s3.bucket}/{batch}/*"]
    # Another user, or another kind of store, never gets these credentials or this prefix.
    for other in (theirs, table):
        assert other["credentials"]["accessKeyId"] != first["credentials"]["accessKeyId"]
        assert not other["prefix"].startswith(batch + "/")
    # Refreshing the write grant of an unfinished upload reuses the batch's credentials too.
    again = server.query(ACCESS, {"s": first["storeId"]}, token=alice)["data"]["requestAccess"]
    assert again["prefix"] == first["prefix"]
    assert again["credentials"] == {"accessKeyId": first["credentials"]["accessKeyId"]}


def test_a_batch_is_not_handed_out_past_half_its_lifetime(server_factory: Any, moto_s3: Any) -> None:
    server = server_factory.start(grant_ttl=2, s3_enforces_session_time=True, **moto_s3.server_settings())
    alice = server.add_user("alice")
    first = _upload(server, alice)
    # The batch's grant ends 2 s after it was made: past half of that, a new upload starts a new batch
    # so that no grant is handed out with less than half its lifetime left.
    time.sleep(1.2)
    later = _upload(server, alice)
    assert later["credentials"]["accessKeyId"] != first["credentials"]["accessKeyId"]
    assert later["prefix"].rsplit("/", 1)[0] != first["prefix"].rsplit("/", 1)[0]


@pytest.mark.parametrize("kind", ["ZARR", "MEDIA"])
def test_folder_store_uploads_get_their_own_prefix(server_factory: Any, kind: str) -> None:
    server = server_factory.start()
    alice = server.add_user("alice")
    grant = server.query(UPLOAD_S3, {"k": kind}, token=alice)["data"]["requestUpload"]
    assert grant["kind"] == "FILE" and grant["credentials"] is None
    assert grant["prefix"].count("/") == 1 and grant["prefix"].startswith(kind.lower() + "/")
