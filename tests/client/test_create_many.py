"""``create_representations``: a batch of images uploaded and recorded all or nothing, on a folder store
and on S3 (moto)."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import numpy as np
import pytest

import mikro
from mikro.client._registrations import BATCH_AT_MOST
from tests.client._counting import count_operations, unfinished_zarr_stores

pytestmark = pytest.mark.anyio


def _folder_objects(server: Any) -> Callable[[], set[str]]:
    root = server.data_dir / "objects"
    return lambda: {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _s3_objects(moto_s3: Any) -> Callable[[], set[str]]:
    s3 = moto_s3.client()

    def keys() -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=moto_s3.bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    return keys


class Where:
    """A connected session on one store kind, and what that store holds."""

    def __init__(
        self, m: mikro.Mikro, server: Any, user: str, token: str, objects: Callable[[], set[str]], kind: str
    ) -> None:
        self.m, self.server, self.user, self.token, self.objects = m, server, user, token, objects
        self.kind = kind

    def connect(self) -> Any:
        """Another session of the same user (its unused store reservations are given back on exit)."""
        return mikro.connect(self.server.url, token=self.token, timeout=30)


@pytest.fixture(params=["folder", "s3"])
async def where(request: pytest.FixtureRequest) -> AsyncIterator[Where]:
    if request.param == "folder":
        server = request.getfixturevalue("mikro_server")
        objects = _folder_objects(server)
    else:
        server = request.getfixturevalue("mikro_server_s3")
        objects = _s3_objects(request.getfixturevalue("moto_s3"))
    user = f"batch-{uuid.uuid4().hex[:8]}"
    token = server.add_user(user)
    async with mikro.connect(server.url, token=token, timeout=30) as m:
        yield Where(m, server, user, token, objects, request.param)


#: Images a batch registers with two requests.
TWO_REQUESTS = BATCH_AT_MOST + 8


def _images(n: int) -> list[np.ndarray]:
    return [(np.arange(64, dtype=np.uint16).reshape(8, 8) + 100 * i) for i in range(n)]


async def _nothing_left(where: Where, tag: str, before: set[str]) -> None:
    """No row, no object and no unfinished store of the batch (checked once its session has ended)."""
    assert await where.m.list_representations(tags=[tag]) == []
    assert where.objects() == before
    assert unfinished_zarr_stores(where.server, where.user) == []


async def test_a_batch_of_200_small_images_round_trips_values_and_metadata(where: Where) -> None:
    m, tag = where.m, uuid.uuid4().hex
    dataset = await m.create_dataset(name="plate-1")
    images = _images(200)
    items = [
        {
            "data": image,
            "name": f"field-{i}",
            "dims": ("y", "x"),
            "dataset": dataset.id,
            "tags": [tag, f"field-{i}"],
            "pixel_size": {"x": 0.5, "y": 0.25},
            "channels": [{"name": f"dapi-{i}"}],
        }
        for i, image in enumerate(images)
    ]
    reps = await m.create_representations(items)
    assert [r.name for r in reps] == [f"field-{i}" for i in range(200)]
    for i, rep in enumerate(reps):
        assert rep.shape == [8, 8] and rep.dtype == "uint16" and rep.tags == [tag, f"field-{i}"]
        assert rep.dataset is not None and rep.dataset.id == dataset.id
        assert rep.physical_size is not None and (rep.physical_size.x, rep.physical_size.y) == (0.5, 0.25)
        assert [c.name for c in rep.channels] == [f"dapi-{i}"]
        assert rep.thumbnails and rep.thumbnails[0].width == 8
    listed = {r.name: r for r in await m.list_representations(tags=[tag], limit=200)}
    assert len(listed) == 200

    async def check(i: int) -> None:
        got = await m.compute(listed[f"field-{i}"].data)
        np.testing.assert_array_equal(np.asarray(got), images[i])

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(check, i)


async def test_the_thumbnails_of_a_batch_read_back_as_pngs_of_their_images(where: Where) -> None:
    from PIL import Image

    m, tag = where.m, uuid.uuid4().hex
    before = where.objects()
    reps = await m.create_representations(
        [{"data": image.T, "name": f"t-{i}", "tags": [tag]} for i, image in enumerate(_images(3))]
    )

    def made() -> set[str]:
        return {key for key in where.objects() - before if key.endswith("/0/thumbnail.png")}

    # Registered by their size alone: the server makes each PNG when it is first read, and keeps it.
    assert made() == set()
    for rep in reps:
        png = await m.thumbnail_png(rep.thumbnails[0])
        pixels = np.asarray(Image.open(io.BytesIO(png)))
        # The transposed ramp: darkest top left, brightest bottom right, rising faster across than down.
        assert pixels.shape == (8, 8) and pixels[0, 0] == 0 and pixels[7, 7] == 255
        assert pixels[0, 1] > pixels[1, 0]
    assert len(made()) == 3


async def test_a_bad_item_is_named_before_anything_is_sent(where: Where) -> None:
    m = where.m
    items: list[dict[str, Any]] = [{"data": image, "name": f"ok-{i}"} for i, image in enumerate(_images(5))]
    items[3] = {"data": np.zeros(7, np.uint16), "name": "a-line"}  # 1-D: not an image
    seen = count_operations(m)
    with pytest.raises(mikro.ValidationError, match=r"items\[3\] \('a-line'\)"):
        await m.create_representations(items)
    assert sum(seen.values()) == 0


async def test_a_batch_with_one_refused_image_names_it_and_creates_none(where: Where) -> None:
    tag = uuid.uuid4().hex
    before = where.objects()
    # Two registration requests, the first committed before the second is refused.
    items: list[dict[str, Any]] = [
        {"data": image, "name": f"r-{i}", "tags": [tag]} for i, image in enumerate(_images(TWO_REQUESTS))
    ]
    items[-2]["sample"] = "999999"  # no such sample: the server refuses this one
    async with where.connect() as other:
        bad = TWO_REQUESTS - 2
        with pytest.raises(mikro.NotFoundError, match=rf"items\[{bad}\] \('r-{bad}'\)"):
            await other.create_representations(items)
    await _nothing_left(where, tag, before)


async def test_a_cancelled_batch_leaves_no_rows_and_no_objects(where: Where) -> None:
    tag = uuid.uuid4().hex
    before = where.objects()
    items = [
        {"data": image, "name": f"c-{i}", "tags": [tag]} for i, image in enumerate(_images(TWO_REQUESTS))
    ]
    async with where.connect() as m:
        execute = m.transport.execute_validated
        with anyio.CancelScope() as scope:

            async def cancel_after_first_rows(document: str, *args: Any, **kwargs: Any) -> Any:
                answer = await execute(document, *args, **kwargs)
                if kwargs.get("operation_name") == "CreateRepresentations":
                    scope.cancel()  # rows of the first request are committed by now
                return answer

            # (The rows' answer is validated from its bytes: execute_validated carries it.)
            m.transport.execute_validated = cancel_after_first_rows  # type: ignore[method-assign]
            await m.create_representations(items)
        assert scope.cancelled_caught
    await _nothing_left(where, tag, before)


async def test_the_returned_models_equal_a_fresh_get(where: Where) -> None:
    m, tag = where.m, uuid.uuid4().hex
    sample = await m.create_sample(name="s-1")
    items = [
        {"data": image, "name": f"e-{i}", "tags": [tag], "sample": sample.id, "pixel_size": {"x": 0.5}}
        for i, image in enumerate(_images(3))
    ]
    reps = await m.create_representations(items)
    for rep in reps:
        assert rep == await m.get_representation(rep.id)


async def test_a_batch_mixing_small_and_pyramid_images_round_trips(where: Where) -> None:
    m, tag = where.m, uuid.uuid4().hex
    big = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    items: list[dict[str, Any]] = [
        {"data": image, "name": f"p-{i}", "tags": [tag]} for i, image in enumerate(_images(3))
    ]
    items.append({"data": big, "name": "p-pyramid", "tags": [tag], "pyramid": 1})
    reps = await m.create_representations(items)
    assert [r.name for r in reps] == ["p-0", "p-1", "p-2", "p-pyramid"]
    assert len(reps[3].store.levels) == 2
    for rep, item in zip(reps, items, strict=True):
        np.testing.assert_array_equal(np.asarray(await m.compute(rep.data)), item["data"])


async def test_an_image_failing_after_the_first_rows_are_recorded_leaves_nothing(where: Where) -> None:
    """A batch of small images is recorded while its later images are still being written: a write
    failing then undoes the rows already recorded too."""
    import threading

    import dask.array as da

    tag = uuid.uuid4().hex
    before = where.objects()
    recorded = threading.Event()

    def late_failure(block: np.ndarray) -> np.ndarray:
        # Reached in a worker thread; fails only once the server has recorded the first images.
        assert recorded.wait(30), "no image of the batch was recorded while this one was being written"
        raise OSError("the acquisition's disk went away")

    count = 64
    items: list[dict[str, Any]] = [
        {"data": image, "name": f"l-{i}", "tags": [tag]} for i, image in enumerate(_images(count))
    ]
    failing = da.from_array(np.zeros((8, 8), np.uint16), chunks=(8, 8)).map_blocks(
        late_failure, dtype=np.uint16, meta=np.empty((0, 0), np.uint16)
    )
    items[-1] = {"data": failing, "name": "late", "tags": [tag]}
    async with where.connect() as m:
        execute = m.transport.execute_validated

        async def note_rows(document: str, *args: Any, **kwargs: Any) -> Any:
            answer = await execute(document, *args, **kwargs)
            if kwargs.get("operation_name") == "CreateRepresentations":
                recorded.set()
            return answer

        m.transport.execute_validated = note_rows  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk went away"):
            await m.create_representations(items)
    assert recorded.is_set()
    await _nothing_left(where, tag, before)
