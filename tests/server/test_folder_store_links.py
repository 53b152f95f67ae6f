"""A folder store never follows a symbolic link a client planted in its own prefix: not to another
user's store, not to a file outside the data dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from mikro.server import Settings
from mikro.server._objects import ObjectStorage
from tests.server._helpers import FINISH, UPLOAD, Api, array_node, upload_zarr, write_zarr_json

pytestmark = pytest.mark.anyio


async def _store_path(api: Api, store_id: str) -> Path:
    query = "query($id: ID!) { zarrStore(id: $id) { path } }"
    return Path((await api.data(query, {"id": store_id}))["zarrStore"]["path"])


async def _finish_through_link(api: Api, plant: Any) -> dict[str, Any]:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    await anyio.to_thread.run_sync(plant, Path(grant["path"]))
    return await api.error(FINISH, {"s": grant["storeId"]})


async def test_links_to_another_users_store_are_not_followed(new_api: Any) -> None:
    alice, mallory = new_api("alice"), new_api("mallory")
    victim = await _store_path(alice, await upload_zarr(alice, shape=[3, 32, 32]))

    def link_file(prefix: Path) -> None:
        os.symlink(victim / "zarr.json", prefix / "zarr.json")

    def link_directory(prefix: Path) -> None:
        os.symlink(victim, prefix / "0")

    for plant in (link_file, link_directory):
        error = await _finish_through_link(mallory, plant)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "symbolic link" in error["message"]


async def test_links_out_of_the_data_dir_are_not_followed(new_api: Any, tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    await anyio.to_thread.run_sync(write_zarr_json, tmp_path, array_node([7, 7], [7, 7]))
    (tmp_path / "zarr.json").rename(outside)
    error = await _finish_through_link(new_api("mallory"), lambda p: os.symlink(outside, p / "zarr.json"))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "symbolic link" in error["message"]


@pytest.mark.parametrize("key", ["../escape/zarr.json", "/etc/passwd", "zarr/a\0b", "zarr/./x", "zarr//x"])
def test_keys_leaving_the_store_are_refused(tmp_path: Path, key: str) -> None:
    from mikro.server._errors import BadUserInput

    storage = ObjectStorage(Settings(data_dir=tmp_path))
    with pytest.raises(BadUserInput):
        storage.read(key)
