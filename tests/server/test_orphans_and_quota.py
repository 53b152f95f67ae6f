"""Deleted and released prefixes are swept again once their write credentials have expired (a
credential still valid at the deletion could refill them), and a per-user storage quota holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.fixtures_servers import MikroServer
from tests.server._helpers import CREATE_REP, FINISH, UPLOAD, Api, array_node, upload_zarr, write_zarr_json

pytestmark = pytest.mark.anyio

# 2 x 16 x 16 uint16 images are 1024 bytes: the quota holds three.
QUOTA = 3 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MikroServer]:
    settings = {"grant_ttl": 1, "maintenance_interval": 0.5, "storage_quota_bytes": QUOTA}
    server = MikroServer(tmp_path_factory.mktemp("mikro-server-sweeps"), settings).start()
    try:
        yield server
    finally:
        server.stop()


async def test_released_prefixes_are_swept_after_their_credentials_expire(server: MikroServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        api = Api(http, server.url, await anyio.to_thread.run_sync(server.add_user, "sweeper"))
        grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
        prefix = Path(grant["path"])
        await anyio.to_thread.run_sync(write_zarr_json, prefix, array_node([2, 4], [2, 4]))
        await api.data("mutation($s: [ID!]!) { releaseUploads(stores: $s) }", {"s": [grant["storeId"]]})
        assert not prefix.exists()
        # A client whose credential was still valid writes on into the released prefix ...
        await anyio.to_thread.run_sync(write_zarr_json, prefix / "0", array_node([2, 4], [2, 4]))
        # ... and once no credential can write there any more, it is swept.
        with anyio.fail_after(60):
            while prefix.exists():
                await anyio.sleep(0.2)


async def test_storage_quota(server: MikroServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        api = Api(http, server.url, await anyio.to_thread.run_sync(server.add_user, "quota"))
        for _ in range(3):
            await upload_zarr(api, shape=[2, 16, 16])
        grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
        node = array_node([2, 16, 16], [2, 16, 16], dims=["z", "y", "x"])
        await anyio.to_thread.run_sync(write_zarr_json, grant["path"], node)
        error = await api.error(FINISH, {"s": grant["storeId"]})
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and "storage_quota_bytes" in error["message"]
        # Creating the image straight from the upload meets the same quota.
        error = await api.error(CREATE_REP, {"input": {"store": grant["storeId"], "name": "over"}})
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and "storage_quota_bytes" in error["message"]
        # Another user has a quota of their own.
        other = Api(http, server.url, await anyio.to_thread.run_sync(server.add_user, "other"))
        assert await upload_zarr(other, shape=[2, 16, 16])
