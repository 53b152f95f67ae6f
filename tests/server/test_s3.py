"""The server on S3 (moto): STS grants scoped to one prefix, uploads through those credentials."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from tests.server._helpers import CREATE_REP, FINISH, Api, array_node, db_rows

pytestmark = pytest.mark.anyio

GRANT = """kind uploadKind storeId endpoint region bucket prefix path write expiresAt
    credentials { accessKeyId secretAccessKey sessionToken expiration }"""
UPLOAD_S3 = f"mutation($k: UploadKind!) {{ requestUpload(kind: $k) {{ {GRANT} }} }}"
ACCESS = f"mutation($s: ID!, $w: Boolean!) {{ requestAccess(store: $s, write: $w) {{ {GRANT} }} }}"


@pytest.fixture
def s3_api(mikro_server_s3: Any, http: httpx.AsyncClient) -> Callable[[str], Api]:
    return lambda name: Api(http, mikro_server_s3.url, mikro_server_s3.add_user(name))


def _put(grant: dict[str, Any], key: str, data: bytes) -> None:
    """Write with the grant's temporary credentials, as a client would (obstore sync API)."""
    import obstore
    from obstore.store import S3Store

    creds = grant["credentials"]
    store = S3Store(
        grant["bucket"],
        endpoint=grant["endpoint"],
        region=grant["region"],
        access_key_id=creds["accessKeyId"],
        secret_access_key=creds["secretAccessKey"],
        session_token=creds["sessionToken"],
        client_options={"allow_http": True},
    )
    obstore.put(store, f"{grant['prefix']}/{key}", data)


def _policy(server: Any, store_id: str) -> list[tuple[int, dict[str, Any]]]:
    rows = db_rows(
        server.database_path, "select write, policy from grants where store_id = ? order by id", store_id
    )
    return [(write, json.loads(policy)) for write, policy in rows]


async def test_upload_grant_is_scoped_to_its_prefix(
    mikro_server_s3: Any, moto_s3: Any, s3_api: Callable[[str], Api]
) -> None:
    api = s3_api("alice")
    before = dt.datetime.now(dt.UTC)
    grant = (await api.data(UPLOAD_S3, {"k": "ZARR"}))["requestUpload"]
    assert grant["kind"] == "S3" and grant["uploadKind"] == "ZARR" and grant["write"] is True
    assert grant["endpoint"] == moto_s3.endpoint_url and grant["bucket"] == moto_s3.bucket
    assert grant["region"] == moto_s3.region
    assert grant["prefix"].startswith("zarr/") and grant["path"] == f"s3://{moto_s3.bucket}/{grant['prefix']}"
    creds = grant["credentials"]
    assert creds["accessKeyId"] and creds["secretAccessKey"] and creds["sessionToken"]
    assert creds["accessKeyId"] != moto_s3.access_key  # temporary credentials, not the server's own
    expires = dt.datetime.fromisoformat(grant["expiresAt"])
    assert before < expires <= before + dt.timedelta(seconds=3600 + 60)
    assert expires <= dt.datetime.fromisoformat(creds["expiration"])

    # Write credentials cover the user's upload batch: the store's prefix lies inside it.
    batch = grant["prefix"].rsplit("/", 1)[0]
    assert batch.startswith("zarr/") and batch != "zarr"
    [(write, policy)] = _policy(mikro_server_s3, grant["storeId"])
    assert write == 1
    objects, listing = policy["Statement"]
    assert objects["Effect"] == "Allow"
    assert objects["Resource"] == [f"arn:aws:s3:::{moto_s3.bucket}/{batch}/*"]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set(objects["Action"])
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == [f"arn:aws:s3:::{moto_s3.bucket}"]
    # ... and to the grant's lifetime: STS's own expiry may be later (it hands out at least 15 minutes).
    until = {"DateLessThan": {"aws:CurrentTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [batch, f"{batch}/*"]}, **until}
    assert objects["Condition"] == until

    # Upload through the granted credentials, then the server reads the metadata back from S3.
    node = array_node([3, 32, 32], [1, 32, 32], "uint8", ["c", "y", "x"])
    await anyio.to_thread.run_sync(_put, grant, "zarr.json", json.dumps(node).encode())
    store = (await api.data(FINISH, {"s": grant["storeId"]}))["finishUpload"]
    assert store["populated"] is True and store["shape"] == [3, 32, 32]
    assert store["path"] == grant["path"]
    rep = await api.data(CREATE_REP, {"input": {"store": grant["storeId"], "name": "s3 image"}})
    assert rep["createRepresentation"]["dims"] == ["c", "y", "x"]

    read = (await api.data(ACCESS, {"s": grant["storeId"], "w": False}))["requestAccess"]
    assert read["write"] is False and read["credentials"]["accessKeyId"]
    (_, _), (read_write, read_policy) = _policy(mikro_server_s3, grant["storeId"])
    assert read_write == 0
    assert read_policy["Statement"][0]["Action"] == ["s3:GetObject"]
    # A read grant reaches this one store only.
    assert read_policy["Statement"][0]["Resource"] == [f"arn:aws:s3:::{moto_s3.bucket}/{grant['prefix']}/*"]


async def test_other_user_gets_no_s3_grant(mikro_server_s3: Any, s3_api: Callable[[str], Api]) -> None:
    alice, bob = s3_api("alice"), s3_api("bob")
    grant = (await alice.data(UPLOAD_S3, {"k": "PARQUET"}))["requestUpload"]
    assert grant["prefix"].startswith("parquet/")
    assert await bob.code(ACCESS, {"s": grant["storeId"], "w": True}) == "NOT_FOUND"
    assert len(_policy(mikro_server_s3, grant["storeId"])) == 1  # no grant was issued to bob


async def test_deleting_an_s3_representation_deletes_its_objects(
    mikro_server_s3: Any, moto_s3: Any, s3_api: Callable[[str], Api]
) -> None:
    api = s3_api("alice")
    grant = (await api.data(UPLOAD_S3, {"k": "ZARR"}))["requestUpload"]
    node = array_node([8, 8], [4, 4], "uint8", ["y", "x"])
    await anyio.to_thread.run_sync(_put, grant, "zarr.json", json.dumps(node).encode())
    await anyio.to_thread.run_sync(_put, grant, "c/0/0", b"\0" * 16)
    await api.data(FINISH, {"s": grant["storeId"]})
    rep = await api.data(CREATE_REP, {"input": {"store": grant["storeId"], "name": "gone"}})
    await api.data(
        "mutation($id: ID!) { deleteRepresentation(id: $id) }", {"id": rep["createRepresentation"]["id"]}
    )

    s3 = moto_s3.client()
    listed = await anyio.to_thread.run_sync(
        lambda: s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=grant["prefix"] + "/")
    )
    assert listed.get("KeyCount", 0) == 0


def test_a_grant_shorter_than_sts_allows_needs_an_s3_that_ends_it(server_factory: Any, moto_s3: Any) -> None:
    """STS credentials live at least 15 minutes: a shorter grant_ttl on S3 would hand out credentials
    that outlive the grant's expiresAt, unless the S3 server enforces the policy's time condition."""
    with pytest.raises(RuntimeError) as refused:
        server_factory.start(grant_ttl=5, **moto_s3.server_settings())
    assert "MIKRO_GRANT_TTL=5 is shorter than the 900 s" in str(refused.value)
    assert "MIKRO_S3_ENFORCES_SESSION_TIME" in str(refused.value)

    server = server_factory.start(grant_ttl=5, s3_enforces_session_time=True, **moto_s3.server_settings())
    before = dt.datetime.now(dt.UTC)
    grant = server.query(UPLOAD_S3, {"k": "MEDIA"})["data"]["requestUpload"]
    expires = dt.datetime.fromisoformat(grant["expiresAt"])
    assert before < expires <= before + dt.timedelta(seconds=5 + 30)
    # The credentials say they end when the grant does, and their policy ends them then.
    assert dt.datetime.fromisoformat(grant["credentials"]["expiration"]) == expires
    [(_, policy)] = _policy(server, grant["storeId"])
    ends = {statement["Condition"]["DateLessThan"]["aws:CurrentTime"] for statement in policy["Statement"]}
    assert ends == {expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_deleted_s3_prefixes_are_swept_once_short_grants_end(server_factory: Any, moto_s3: Any) -> None:
    """With grants that end before STS's 15 minutes, a released prefix that a client refilled with its
    still-valid credentials is swept once the grant has ended, not 15 minutes later."""
    settings = {"grant_ttl": 2, "s3_enforces_session_time": True, "maintenance_interval": 0.5}
    server = server_factory.start(**settings, log_level="info", **moto_s3.server_settings())
    token = server.add_user("sweeper")
    grant = server.query(UPLOAD_S3, {"k": "MEDIA"}, token=token)["data"]["requestUpload"]
    released = server.query(
        "mutation($s: [ID!]!) { releaseUploads(stores: $s) }", {"s": [grant["storeId"]]}, token=token
    )
    assert "errors" not in released, released
    _put(grant, "file", b"written after the release")
    s3 = moto_s3.client()
    assert s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=grant["prefix"] + "/")["KeyCount"] == 1
    # The maintenance round that sweeps the prefix (once the grant has ended) says so in its log.
    server.wait_for_log("swept 1 deleted prefixes")
    assert s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=grant["prefix"] + "/")["KeyCount"] == 0
