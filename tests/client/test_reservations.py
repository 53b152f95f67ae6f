"""Upload stores are reserved in batches sized by the uploads in progress, and given back unused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest

import mikro
from tests.client._counting import count_operations, unfinished_zarr_stores

pytestmark = pytest.mark.anyio


@pytest.fixture
def user(mikro_server: Any) -> Callable[[str], str]:
    return lambda name: str(mikro_server.add_user(name))


async def test_concurrent_uploads_share_reservations_and_leave_nothing_behind(
    mikro_server: Any, user: Callable[[str], str]
) -> None:
    token = user("reserver")
    images = [np.full((16, 16), i, np.uint16) for i in range(12)]
    async with mikro.connect(mikro_server.url, token=token) as m:
        seen = count_operations(m)
        limiter = anyio.CapacityLimiter(4)
        reps: list[Any] = []

        async def one(i: int) -> None:
            async with limiter:
                reps.append(await m.create_representation(images[i], name=f"r{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(len(images)):
                tg.start_soon(one, i)
        assert sorted(int(r.shape[0]) for r in reps) == [16] * 12
        assert len({r.store.id for r in reps}) == 12
        # 4 in flight: a handful of requests reserve the 12 stores, not one request per image.
        assert seen["RequestUpload"] == 0
        assert 1 <= seen["RequestUploads"] <= 6
        values = [int((await m.compute(r.data)).values[0, 0]) for r in reps]
        assert sorted(values) == list(range(12))
    # Reservations not used were given back when the session closed.
    assert unfinished_zarr_stores(mikro_server, "reserver") == []


async def test_a_lone_upload_reserves_one_store(mikro_server: Any, user: Callable[[str], str]) -> None:
    token = user("loner")
    async with mikro.connect(mikro_server.url, token=token) as m:
        seen = count_operations(m)
        for i in range(3):
            await m.create_representation(np.zeros((8, 8), np.uint8), name=f"lone{i}")
        assert seen["RequestUploads"] == 3
        assert m.reservations.unused() == []
        assert seen["ReleaseUploads"] == 0


async def test_a_failed_upload_gives_its_store_back(mikro_server: Any, user: Callable[[str], str]) -> None:
    token = user("failer")
    async with mikro.connect(mikro_server.url, token=token) as m:
        with pytest.raises(mikro.NotFoundError):
            # The store is reserved and written, then the server refuses the unknown sample.
            await m.create_representation(np.zeros((8, 8), np.uint8), name="orphan", sample="999999")
        assert await m.list_representations(name_contains="orphan") == []
        assert unfinished_zarr_stores(mikro_server, "failer") == []


async def test_releasing_a_finished_store_is_refused(mikro_server: Any, user: Callable[[str], str]) -> None:
    token = user("keeper")
    async with mikro.connect(mikro_server.url, token=token) as m:
        rep = await m.create_representation(np.zeros((8, 8), np.uint8), name="kept")
        with pytest.raises(mikro.GraphQLError) as refused:
            await m.release_uploads([rep.store.id])
        assert refused.value.code == "CONFLICT"
        assert (await m.get_representation(rep.id)).store.populated is True
        [grant] = await m.request_uploads(1)
        assert await m.release_uploads([grant.store_id]) == [str(grant.store_id)]
        with pytest.raises(mikro.NotFoundError):
            await m.get_zarr_store(grant.store_id)


async def test_a_batch_of_small_images_takes_its_stores_in_full_reservations(
    mikro_server: Any, user: Callable[[str], str]
) -> None:
    token = user("plate")
    images = [np.full((8, 8), i, np.uint16) for i in range(300)]
    async with mikro.connect(mikro_server.url, token=token) as m:
        seen = count_operations(m)
        reps = await m.create_representations(
            [{"data": image, "name": f"field-{i}"} for i, image in enumerate(images)]
        )
        assert len({r.store.id for r in reps}) == 300
        # 300 stores at up to 256 per request: two requests, the second's extra stores kept in the pool.
        assert seen["RequestUploads"] == 2
        assert len(m.reservations.unused()) == 212
        assert [int((await m.compute(r.data)).values[0, 0]) for r in reps[::99]] == [0, 99, 198, 297]
    assert unfinished_zarr_stores(mikro_server, "plate") == []
