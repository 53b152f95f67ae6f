"""A small image's thumbnail is made by the server from the stored pixels when it is first read, kept
beside the image, and served from there afterwards; on a folder store and on S3 (moto)."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import pytest
import zarr
from ome_zarr_models.v05 import Image as OmeImage
from PIL import Image

import mikro
from mikro.datalayer import make_thumbnail
from tests.server._helpers import db_rows

pytestmark = pytest.mark.anyio


@dataclass
class Site:
    """A session on one store kind, and the objects of that store as the server keeps them."""

    m: mikro.Mikro
    server: Any
    kind: str
    s3: Any = None
    bucket: str = ""

    def keys(self, prefix: str) -> set[str]:
        if self.s3 is None:
            root = self.server.data_dir / "objects" / prefix
            return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/")
        return {item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", [])}

    def delete(self, key: str) -> None:
        if self.s3 is None:
            (self.server.data_dir / "objects" / key).unlink()
        else:
            self.s3.delete_object(Bucket=self.bucket, Key=key)


@pytest.fixture(params=["folder", "s3"])
async def site(request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    s3: Any = None
    bucket = ""
    if request.param == "folder":
        server = request.getfixturevalue("mikro_server")
    else:
        server = request.getfixturevalue("mikro_server_s3")
        moto = request.getfixturevalue("moto_s3")
        s3 = moto.client()
        bucket = moto.bucket
    token = server.add_user(f"thumbs-{uuid.uuid4().hex[:8]}")
    async with mikro.connect(server.url, token=token, timeout=30) as m:
        yield Site(m, server, request.param, s3, bucket)


def _pixels(png: bytes) -> np.ndarray[Any, Any]:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image)


async def _read(site: Site, rep: Any) -> bytes:
    (thumb,) = rep.thumbnails
    return await site.m.thumbnail_png(thumb)


async def test_a_small_images_thumbnail_is_made_from_its_pixels_once(site: Site) -> None:
    rng = np.random.default_rng(7)
    # Two channels of a three-plane stack: the max projection over both is what the thumbnail shows.
    values = rng.integers(0, 3000, (2, 3, 40, 300), dtype=np.uint16)
    values[1, 2, 10:20, 100:200] = 9000
    rep = await site.m.create_representation(values, name="stack", dims="czyx")
    (thumb,) = rep.thumbnails or []
    expected = make_thumbnail(values.max(axis=(0, 1)))
    assert (thumb.width, thumb.height) == (expected.width, expected.height) == (256, 34)
    assert site.keys(rep.store.key) == {"zarr.json", "0/zarr.json", "0/c.0.0.0.0"}

    # Two first reads at once both get it.
    got: list[bytes] = []

    async def read() -> None:
        got.append(await _read(site, rep))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        tg.start_soon(read)
    assert got[0] == got[1] == expected.png
    assert _pixels(got[0]).shape == (thumb.height, thumb.width)
    assert site.keys(rep.store.key) == {"zarr.json", "0/zarr.json", "0/c.0.0.0.0", "0/thumbnail.png"}
    if site.s3 is None:
        # Still valid OME-Zarr whose group holds its one array: the PNG is inside it, where zarr never lists.
        group = zarr.open_group(str(site.server.data_dir / "objects" / rep.store.key), mode="r")
        OmeImage.from_zarr(group)
        assert [name for name, _ in group.members()] == ["0"]
        np.testing.assert_array_equal(group["0"][...], values)

    # Kept: without its pixels, the image's thumbnail is still served (read, not made again).
    site.delete(f"{rep.store.key}/0/c.0.0.0.0")
    assert await _read(site, await site.m.get_representation(rep)) == expected.png

    # Deleting the image deletes the thumbnail made for it.
    await site.m.delete_representation(rep)
    assert site.keys(rep.store.key) == set()


async def test_another_user_cannot_read_a_thumbnail_and_none_is_made_for_them(site: Site) -> None:
    rep = await site.m.create_representation(np.eye(32, dtype=np.uint8), name="private")
    (thumb,) = rep.thumbnails or []
    other = site.server.add_user(f"other-{uuid.uuid4().hex[:8]}")
    async with mikro.connect(site.server.url, token=other, timeout=30) as b:
        with pytest.raises(mikro.NotFoundError):
            await b.thumbnail_png(thumb)
    assert "0/thumbnail.png" not in site.keys(rep.store.key)
    assert _pixels(await _read(site, rep)).max() == 255


async def test_no_thumbnail_is_made_for_an_image_registered_without_one(site: Site) -> None:
    rep = await site.m.create_representation(np.ones((16, 16), np.uint16), name="bare", thumbnail=False)
    assert rep.thumbnails == []
    assert "0/thumbnail.png" not in site.keys(rep.store.key)


async def test_an_image_with_a_pyramid_keeps_its_client_made_thumbnail(site: Site) -> None:
    values = np.zeros((96, 160), dtype=np.uint16)
    values[:, 80:] = 500
    rep = await site.m.create_representation(values, name="levels", pyramid=1)
    assert len(rep.store.levels) == 2
    # The client made and sent it: the server keeps it in its database, not as an object.
    assert db_rows(
        site.server.database_path,
        "select png is not null, key is null from thumbnails where representation_id = ?",
        int(rep.id),
    ) == [(1, 1)]
    (thumb,) = rep.thumbnails or []
    shown = _pixels(await _read(site, rep))
    assert shown.shape == (thumb.height, thumb.width) == (48, 80)  # of the coarser level
    assert shown[:, :38].max() == 0 and shown[:, 42:].min() == 255
    assert "0/thumbnail.png" not in site.keys(rep.store.key)


async def test_a_pyramid_built_later_still_gets_the_thumbnail_of_level_0(site: Site) -> None:
    values = np.random.default_rng(4).integers(0, 4000, (64, 96), dtype=np.uint16)
    rep = await site.m.create_representation(values, name="later", pyramid=None)
    rep = await site.m.build_pyramid(rep, pyramid=1)
    assert len(rep.store.levels) == 2
    assert await _read(site, rep) == make_thumbnail(values).png
