"""Concurrent uploads register with one createRepresentations request; when a batch fails, every image
gets its own answer and a failed upload leaves nothing behind."""

from __future__ import annotations

import io
import json
from typing import Any

import anyio
import numpy as np
import pytest
import sniffio
from PIL import Image

import mikro
from tests.client._counting import count_operations, unfinished_zarr_stores
from tests.server._helpers import array_node, b64

pytestmark = pytest.mark.anyio


def _input(store: str, name: str, **extra: Any) -> dict[str, Any]:
    # The server records the array from the metadata sent with the request: no pixels are needed here.
    document = json.dumps(array_node([3, 4], [3, 4], "uint8", ["y", "x"]))
    return {"store": store, "name": name, "array_metadata": document, **extra}


async def _register_together(m: mikro.Mikro, inputs: list[dict[str, Any]]) -> list[Any]:
    """Register every input from its own task, all started at once; results (or errors) in input order."""
    results: list[Any] = [None] * len(inputs)

    async def one(i: int) -> None:
        try:
            results[i] = await m.registrations.register(inputs[i])
        except mikro.MikroError as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(inputs)):
            tg.start_soon(one, i)
    return results


async def test_registrations_waiting_for_a_request_share_the_next(mikro_server: Any) -> None:
    async with mikro.connect(mikro_server.url, token=mikro_server.add_user("grouper")) as m:
        stores = [g.store_id for g in await m.request_uploads(6)]
        seen = count_operations(m)
        reps = await _register_together(m, [_input(s, f"g{i}") for i, s in enumerate(stores)])
        # The first goes at once; the five that arrive while it is in flight share the next request.
        assert (seen["CreateRepresentation"], seen["CreateRepresentations"]) == (1, 1)
        assert [r.name for r in reps] == [f"g{i}" for i in range(6)]
        assert [str(r.store.id) for r in reps] == [str(s) for s in stores]
        assert all(r.shape == [3, 4] and r.dims == ["y", "x"] for r in reps)


async def test_a_failed_batch_gives_each_image_its_own_answer(mikro_server: Any) -> None:
    async with mikro.connect(mikro_server.url, token=mikro_server.add_user("splitter")) as m:
        stores = [g.store_id for g in await m.request_uploads(5)]
        inputs = [_input(s, f"s{i}") for i, s in enumerate(stores)]
        inputs[2]["sample"] = "999999"  # unknown: the batch carrying it fails as a whole
        seen = count_operations(m)
        results = await _register_together(m, inputs)
        assert isinstance(results[2], mikro.NotFoundError)
        assert "inputs[" not in str(results[2])  # its own request's answer, not the batch's
        assert [r.name for i, r in enumerate(results) if i != 2] == ["s0", "s1", "s3", "s4"]
        # One alone, one batch of four that failed, then those four one by one. trio shuffles the order
        # in which tasks started together first run, so there the bad input may be the one sent alone:
        # it fails by itself and the batch of the four good ones goes through.
        sent = (seen["CreateRepresentation"], seen["CreateRepresentations"])
        assert sent == (5, 1) or (sniffio.current_async_library() == "trio" and sent == (1, 1)), sent
        assert {r.name for r in await m.list_representations(name_contains="s")} == {"s0", "s1", "s3", "s4"}


async def test_concurrent_uploads_with_one_refused_leave_only_the_good_ones(mikro_server: Any) -> None:
    async with mikro.connect(mikro_server.url, token=mikro_server.add_user("mixed")) as m:
        images = [np.full((16, 16), i, np.uint16) for i in range(8)]
        outcome: dict[int, Any] = {}

        async def one(i: int) -> None:
            extra = {"sample": "999999"} if i == 5 else {}
            try:
                outcome[i] = await m.create_representation(images[i], name=f"m{i}", **extra)
            except mikro.NotFoundError as exc:
                outcome[i] = exc

        async with anyio.create_task_group() as tg:
            for i in range(len(images)):
                tg.start_soon(one, i)
        assert isinstance(outcome.pop(5), mikro.NotFoundError)
        for i, rep in outcome.items():
            assert int((await m.compute(rep.data)).values[0, 0]) == i
            assert rep.thumbnails and rep.thumbnails[0].width == 16
        assert len(await m.list_representations(name_contains="m")) == 7
    # The refused image's store was given back, with whatever was written to it.
    assert unfinished_zarr_stores(mikro_server, "mixed") == []


async def test_registrations_with_large_thumbnails_share_requests_within_the_body_limit(
    mikro_server: Any,
) -> None:
    # Six PNGs of ~700 kB (~930 kB of base64 each): one request would exceed the server's 4 MiB body
    # limit, so they go in requests of at most three.
    pixels = np.random.default_rng(0).integers(0, 256, (640, 1100), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = buffer.getvalue()
    assert 600_000 < len(png) < 1024 * 1024
    async with mikro.connect(mikro_server.url, token=mikro_server.add_user("big-thumbs")) as m:
        stores = [g.store_id for g in await m.request_uploads(7)]
        first = _input(stores[0], "t0")  # sent alone while the other six wait
        inputs = [
            first,
            *(_input(s, f"t{i}", thumbnail={"png": b64(png)}) for i, s in enumerate(stores[1:], 1)),
        ]
        seen = count_operations(m)
        reps = await _register_together(m, inputs)
        assert [r.name for r in reps] == [f"t{i}" for i in range(7)]
        assert seen["CreateRepresentations"] == 2
        assert await m.thumbnail_png(reps[6].thumbnails[0]) == png
