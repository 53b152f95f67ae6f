"""createRepresentation finishes an unfinished upload and records the thumbnail sent with it (the PNG
is kept by the server, not on the store)."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.server._helpers import UPLOAD, Api, array_node, b64, db_rows, png_bytes, write_zarr_json

pytestmark = pytest.mark.anyio

CREATE = """
mutation($input: RepresentationInput!) {
  createRepresentation(input: $input) {
    id shape dims dtype store { id populated shape path arrayPath }
    thumbnails { id width height }
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
    assert rep["store"] == {
        "id": store,
        "populated": True,
        "shape": [2, 32, 48],
        "path": str(root),
        "arrayPath": "0",
    }
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


async def test_thumbnail_sent_with_the_image_is_kept_by_the_server(api: Api, mikro_server: Any) -> None:
    store, root = await _ome_upload(api)
    png = png_bytes(48, 32)
    created = await api.data(
        CREATE, {"input": {"store": store, "name": "thumbed", "thumbnail": {"png": b64(png)}}}
    )
    rep = created["createRepresentation"]
    [thumb] = rep["thumbnails"]
    # Width and height come from the PNG's header, the bytes come back as sent.
    assert (thumb["width"], thumb["height"]) == (48, 32)
    got = await api.data("query($id: ID!) { thumbnail(id: $id) { png } }", {"id": thumb["id"]})
    assert base64.b64decode(got["thumbnail"]["png"]) == png
    # Nothing but the image's own objects on the store, and no store row of its own.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "0/zarr.json",
        "zarr.json",
    ]
    assert db_rows(
        mikro_server.database_path, "select kind from stores where key like ?", f"%{root.name}%"
    ) == [("ZARR",)]

    await api.data(DELETE_THUMB, {"id": thumb["id"]})
    again = await api.data(
        "query($id: ID!) { representation(id: $id) { thumbnails { id } } }", {"id": rep["id"]}
    )
    assert again["representation"]["thumbnails"] == []
    assert (root / "0" / "zarr.json").exists()

    # Deleting the image deletes its thumbnails.
    other = await api.data(
        "mutation($i: ThumbnailInput!) { createThumbnail(input: $i) { id } }",
        {"i": {"representation": rep["id"], "png": b64(png)}},
    )
    await api.data(DELETE_REP, {"id": rep["id"]})
    assert not root.exists()
    assert (
        db_rows(
            mikro_server.database_path, "select id from thumbnails where representation_id = ?", rep["id"]
        )
        == []
    )
    gone = await api.code(
        "query($id: ID!) { thumbnail(id: $id) { id } }", {"id": other["createThumbnail"]["id"]}
    )
    assert gone == "NOT_FOUND"


def _with_crc(chunk_type: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", zlib.crc32(chunk_type + data))


_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BAD_PNGS = {
    "gif": (b"GIF89a" + bytes(100), "not a PNG"),
    "signature only": (_SIGNATURE, "not a PNG"),
    "no IHDR first": (_SIGNATURE + _with_crc(b"IDAT", bytes(13)), "IHDR"),
    "bad IHDR crc": (png_bytes(8, 8)[:29] + b"\0\0\0\0" + png_bytes(8, 8)[33:], "IHDR"),
    "too wide": (png_bytes(4097, 2), "4097x2"),
    "too tall": (png_bytes(1, 5000), "1x5000"),
    "too large": (png_bytes(16, 16) + bytes(1024 * 1024), "bytes"),
}


@pytest.mark.parametrize("case", list(BAD_PNGS))
async def test_bad_thumbnail_is_refused_and_creates_nothing(api: Api, mikro_server: Any, case: str) -> None:
    png, says = BAD_PNGS[case]
    store, _ = await _ome_upload(api)
    error = await api.error(
        CREATE, {"input": {"store": store, "name": "bad", "thumbnail": {"png": b64(png)}}}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("thumbnail png ") and says in error["message"]
    assert (
        db_rows(mikro_server.database_path, "select id from representations where store_id = ?", store) == []
    )
    # Nothing was created: the store can still become an image.
    ok = await api.data(CREATE, {"input": {"store": store, "name": "good"}})
    assert ok["createRepresentation"]["shape"] == [2, 32, 48]


@pytest.mark.parametrize(
    "encode",
    [
        lambda png: base64.b64encode(png).decode("ascii"),
        # MIME-style: a line break every 76 characters, which Base64 parsing has always skipped.
        lambda png: base64.encodebytes(png).decode("ascii"),
    ],
    ids=["strict", "line breaks"],
)
async def test_thumbnail_bytes_come_back_as_sent(api: Api, encode: Any) -> None:
    store, _ = await _ome_upload(api)
    png = png_bytes(40, 30)
    created = await api.data(
        CREATE, {"input": {"store": store, "name": "thumbed", "thumbnail": {"png": encode(png)}}}
    )
    [thumb] = created["createRepresentation"]["thumbnails"]
    got = await api.data("query($id: ID!) { thumbnail(id: $id) { png } }", {"id": thumb["id"]})
    assert got["thumbnail"]["png"] == base64.b64encode(png).decode("ascii")


async def test_thumbnail_that_is_not_base64_is_refused(api: Api) -> None:
    store, _ = await _ome_upload(api)
    error = await api.error(CREATE, {"input": {"store": store, "name": "bad", "thumbnail": {"png": "@@@"}}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "png" in error["message"]
