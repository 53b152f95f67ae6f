"""createRepresentation finishes an unfinished upload and records a thumbnail inside the image's store."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.server._helpers import UPLOAD, Api, array_node, db_rows, write_zarr_json

pytestmark = pytest.mark.anyio

CREATE = """
mutation($input: RepresentationInput!) {
  createRepresentation(input: $input) {
    id shape dims dtype store { id populated shape path }
    thumbnails { id width height store { id key path } }
  }
}"""
DELETE_THUMB = "mutation($id: ID!) { deleteThumbnail(id: $id) }"
DELETE_REP = "mutation($id: ID!) { deleteRepresentation(id: $id) }"


async def _ome_upload(api: Api) -> tuple[str, Path]:
    """A reserved zarr store holding an OME-Zarr group with its array at 0/ (not finished)."""
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    root = Path(grant["path"])

    def write() -> None:
        write_zarr_json(root, {"zarr_format": 3, "node_type": "group", "attributes": {}})
        write_zarr_json(root / "0", array_node([2, 32, 48], [1, 32, 48], "uint16", ["z", "y", "x"]))

    await anyio.to_thread.run_sync(write)
    return str(grant["storeId"]), root


async def test_create_finishes_the_upload_in_the_same_request(api: Api, mikro_server: object) -> None:
    store, root = await _ome_upload(api)
    rep = (await api.data(CREATE, {"input": {"store": store, "name": "direct"}}))["createRepresentation"]
    assert rep["shape"] == [2, 32, 48] and rep["dims"] == ["z", "y", "x"] and rep["dtype"] == "uint16"
    assert rep["store"] == {"id": store, "populated": True, "shape": [2, 32, 48], "path": str(root / "0")}
    assert rep["thumbnails"] == []
    # Finished means read-only: no more write grants for it.
    code = await api.code(
        "mutation($s: ID!) { requestAccess(store: $s, write: true) { prefix } }", {"s": store}
    )
    assert code == "CONFLICT"


async def test_create_of_an_upload_without_metadata_creates_nothing(api: Api, mikro_server: object) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    error = await api.error(CREATE, {"input": {"store": grant["storeId"], "name": "empty"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "zarr.json" in error["message"]
    database = mikro_server.database_path  # type: ignore[attr-defined]
    assert db_rows(database, "select id from representations where store_id = ?", int(grant["storeId"])) == []


async def test_thumbnail_in_the_image_store_is_recorded_and_deleted_alone(api: Api) -> None:
    store, root = await _ome_upload(api)
    png = root / "0" / "thumbnail" / "thumbnail.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG fake")
    created = await api.data(
        CREATE, {"input": {"store": store, "name": "thumbed", "thumbnail": {"width": 48, "height": 32}}}
    )
    rep = created["createRepresentation"]
    [thumb] = rep["thumbnails"]
    assert (thumb["width"], thumb["height"]) == (48, 32)
    assert thumb["store"]["path"] == str(png)
    assert thumb["store"]["id"] != store

    # Deleting the thumbnail removes its PNG and leaves the pixels' metadata alone.
    await api.data(DELETE_THUMB, {"id": thumb["id"]})
    assert not png.exists()
    assert (root / "0" / "zarr.json").exists() and (root / "zarr.json").exists()
    again = await api.data(
        "query($id: ID!) { representation(id: $id) { thumbnails { id } } }", {"id": rep["id"]}
    )
    assert again["representation"]["thumbnails"] == []

    await api.data(DELETE_REP, {"id": rep["id"]})
    assert not root.exists()


@pytest.mark.parametrize("size", [{"width": 0, "height": 5}, {"width": 5, "height": -1}])
async def test_thumbnail_of_no_size_is_refused(api: Api, size: dict[str, int]) -> None:
    store, _ = await _ome_upload(api)
    assert (
        await api.code(CREATE, {"input": {"store": store, "name": "bad", "thumbnail": size}})
        == "BAD_USER_INPUT"
    )
    # Nothing was created: the store can still become an image.
    ok = await api.data(CREATE, {"input": {"store": store, "name": "good"}})
    assert ok["createRepresentation"]["shape"] == [2, 32, 48]
