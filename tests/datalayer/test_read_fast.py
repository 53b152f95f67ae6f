"""How reads fetch: one GET per whole shard, only the touched chunks' ranges for a slice, any layout right.

Images here are written shard by shard with the writer's own encoder (`encode_shard`) so that chunk and
shard shapes can be chosen freely: edge chunks and edge shards on every axis, shards whose chunks are
stored in another order or are missing. Request and byte counts come from the reading store's `stats`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import anyio
import google_crc32c
import numpy as np
import pytest

import mikro
from mikro.datalayer import (
    GrantedStore,
    ImageLayout,
    ShardedArrayReader,
    _fetch,
    _read,
    compute,
    open_dataarray,
)
from mikro.datalayer._fetch import coalesce, copy_flat
from mikro.datalayer._shard import EMPTY, ChunkCodec, ShardIndex, encode_shard
from tests.datalayer.conftest import CountingProvider

SHAPE = (6, 50, 70)  # no axis a multiple of the chunk or shard size: edge chunks and shards everywhere
CHUNKS = (1, 16, 32)
SHARDS = (4, 32, 64)  # 4 x 2 x 2 = 16 chunks per shard, 2 x 2 x 2 shards


def values_for(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, shape).astype(dtype)


def put_image(
    store: GrantedStore,
    values: np.ndarray[Any, Any],
    *,
    chunks: tuple[int, ...] = CHUNKS,
    shards: tuple[int, ...] = SHARDS,
    compression: Any = None,
    reorder: bool = False,
    drop: tuple[int, ...] | None = None,
) -> ImageLayout:
    """Store ``values`` as mikro does; ``reorder`` writes every shard's chunks in reverse order, ``drop``
    leaves that chunk position out of every shard (both allowed by the format, neither written by mikro)."""
    layout = ImageLayout(
        shape=values.shape,
        dtype=values.dtype,
        dims=("z", "y", "x")[-values.ndim :],
        chunks=chunks,
        shards=shards,
        compression=compression,
    )
    codec = ChunkCodec.for_layout(layout)
    store.put("0/zarr.json", json.dumps(layout.array_metadata()).encode())
    for pos in layout.shard_positions():
        shard = encode_shard(values[layout.shard_region(pos)], layout, codec)
        if reorder or drop is not None:
            shard = rewrite_shard(shard, layout.chunks_per_shard, reorder=reorder, drop=drop)
        store.put(layout.shard_key(pos), shard)
    return layout


def rewrite_shard(data: Any, cps: tuple[int, ...], *, reorder: bool, drop: tuple[int, ...] | None) -> bytes:
    data = bytes(data)  # the encoder may hand out any buffer
    n = ShardIndex.nbytes(cps)
    index = ShardIndex.decode(data[-n:], cps)
    chunks = {p: index.locate(p) for p in np.ndindex(*cps)}
    order = [p for p in chunks if chunks[p] is not None and p != drop]
    if reorder:
        order.reverse()
    table = np.full((*cps, 2), EMPTY, dtype="<u8")
    parts: list[bytes] = []
    offset = 0
    for p in order:
        start, length = chunks[p] or (0, 0)
        parts.append(data[start : start + length])
        table[p] = (offset, length)
        offset += length
    body = table.tobytes()
    crc = np.array([google_crc32c.value(body)], dtype="<u4").tobytes()
    return b"".join([*parts, body, crc])


def open_view(store: GrantedStore, layout: ImageLayout) -> Any:
    return open_dataarray(
        store,
        shape=layout.shape,
        chunks=layout.chunks,
        shards=layout.shards,
        dtype=layout.dtype,
        dims=layout.dims,
        pixel_size={"x": 0.5},
        name="img",
        attrs={"representation": "7"},
    )


def stored_sizes(store: GrantedStore) -> dict[str, int]:
    return {key: len(store.get(key) or b"") for key in store.list_keys()}


def plane_chunk_bytes(store: GrantedStore, layout: ImageLayout, z: int) -> tuple[int, int]:
    """Stored bytes of plane ``z``'s chunks, and how many shards hold them."""
    total = shards = 0
    cps = layout.chunks_per_shard
    for pos in layout.shard_positions():
        if pos[0] != z // layout.shards[0]:
            continue
        shards += 1
        raw = store.get_suffix(layout.shard_key(pos), ShardIndex.nbytes(cps))
        assert raw is not None
        index = ShardIndex.decode(raw, cps)
        for local in np.ndindex(*cps):
            where = index.locate(local)
            if where is not None and local[0] == (z % layout.shards[0]) // layout.chunks[0]:
                total += where[1]
    return total, shards


COMPRESSIONS = [None, "blosc-lz4", "zstd"]


@pytest.mark.anyio
@pytest.mark.parametrize("compression", COMPRESSIONS)
async def test_full_read_is_one_get_per_shard(
    make_provider: Callable[..., CountingProvider], compression: Any
) -> None:
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression=compression)
    sizes = stored_sizes(GrantedStore(provider))
    shard_keys = [k for k in sizes if "/c." in k]
    assert len(shard_keys) == 8

    # The whole image (`await m.compute(rep.data)`): read without dask, straight into one array.
    reader = GrantedStore(provider)
    got = await compute(open_view(reader, layout))
    np.testing.assert_array_equal(got.values, values)
    stats = reader.stats.snapshot()
    assert stats["gets"] == 1 + len(shard_keys)  # zarr.json, then each shard once, index included
    assert stats["bytes_read"] == sizes["0/zarr.json"] + sum(sizes[k] for k in shard_keys)

    # Through dask, an expression that needs every chunk (one task each): still one GET per shard,
    # shared by the tasks of its chunks.
    reader = GrantedStore(provider)
    total = await compute((open_view(reader, layout).astype("int64") + 1).sum())
    assert int(total) == int(values.astype("int64").sum()) + values.size
    stats = reader.stats.snapshot()
    assert stats["gets"] == 1 + len(shard_keys)
    assert stats["bytes_read"] == sizes["0/zarr.json"] + sum(sizes[k] for k in shard_keys)

    # One that needs some chunks only: their ranges, after the index of each shard they are in.
    reader = GrantedStore(provider)
    part = await compute(open_view(reader, layout)[1:3, 20:40].max())
    assert int(part) == int(values[1:3, 20:40].max())
    chunks = 2 * 2 * 3  # z 1, 2; y chunks 1, 2; x chunks 0, 1, 2
    assert reader.stats.snapshot()["gets"] == 1 + 4 + chunks  # z 1-2 and y 20-40 lie in 4 shards


@pytest.mark.anyio
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
async def test_bare_dask_compute_shares_whole_shards_too(
    make_provider: Callable[..., CountingProvider], scheduler: str
) -> None:
    """``rep.data.max().compute()`` / ``.values`` without mikro's ``compute`` (a script, the sync
    facade): one GET per shard while it runs, not one range per chunk; the next slice reads ranges again."""
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression="zstd")
    sizes = stored_sizes(GrantedStore(provider))
    shards = len([k for k in sizes if "/c." in k])

    store = GrantedStore(provider)
    view = open_view(store, layout)
    expr = (view.astype("int64") + 1).sum()
    total = await anyio.to_thread.run_sync(lambda: expr.compute(scheduler=scheduler))
    assert int(total) == int(values.astype("int64").sum()) + values.size
    assert store.stats.snapshot()["gets"] == 1 + shards  # zarr.json, then each shard once

    got = await anyio.to_thread.run_sync(lambda: view.compute(scheduler=scheduler).values)
    np.testing.assert_array_equal(got, values)
    assert store.stats.snapshot()["gets"] == 1 + 2 * shards

    # Once the full computations are done, a slice fetches its chunks' ranges only.
    part = await anyio.to_thread.run_sync(lambda: view[1:3, 20:40].max().compute(scheduler=scheduler))
    assert int(part) == int(values[1:3, 20:40].max())
    assert store.stats.snapshot()["gets"] == 1 + 2 * shards + 2 * 2 * 3  # indexes known: chunks only


@pytest.mark.anyio
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
async def test_plain_compute_of_the_whole_image_reads_it_in_one_task(
    make_provider: Callable[..., CountingProvider], scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rep.data.values`` / ``.compute()`` / ``np.asarray(rep.data)`` in a script: one task reads the
    image shard by shard (one GET each) and dask gets every chunk as a view of it."""
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression="zstd")
    sizes = stored_sizes(GrantedStore(provider))
    shard_keys = [k for k in sizes if "/c." in k]
    store = GrantedStore(provider)
    view = open_view(store, layout)

    whole_reads: list[int] = []
    read_all = ShardedArrayReader.read_all

    def counted(reader: ShardedArrayReader) -> Any:
        whole_reads.append(1)
        return read_all(reader)

    monkeypatch.setattr(ShardedArrayReader, "read_all", counted)
    for derived in (view + 1, view[1:], view.max()):  # an expression keeps dask's own graph
        await anyio.to_thread.run_sync(lambda: derived.compute(scheduler=scheduler))  # noqa: B023
    assert whole_reads == []
    before = store.stats.snapshot()

    got = await anyio.to_thread.run_sync(lambda: view.compute(scheduler=scheduler))
    np.testing.assert_array_equal(got.values, values)  # edge chunks on every axis, each in its place
    assert got.dims == view.dims and got.attrs == view.attrs
    assert whole_reads == [1]
    stats = store.stats.snapshot()
    assert stats["gets"] - before["gets"] == len(shard_keys)  # each shard once (zarr.json known)
    assert stats["bytes_read"] - before["bytes_read"] == sum(sizes[k] for k in shard_keys)
    np.testing.assert_array_equal(await anyio.to_thread.run_sync(np.asarray, view), values)
    np.testing.assert_array_equal(await anyio.to_thread.run_sync(lambda: view.values), values)
    assert whole_reads == [1, 1, 1]


@pytest.mark.anyio
async def test_plain_compute_of_the_whole_image_raises_the_grant_error(
    make_provider: Callable[..., CountingProvider],
) -> None:
    provider = make_provider(ttl=0.4)
    store = GrantedStore(provider)
    values = values_for(SHAPE)
    view = open_view(store, put_image(store, values))
    np.testing.assert_array_equal(await anyio.to_thread.run_sync(lambda: view[0].values), values[0])
    provider.revoked = True
    await anyio.sleep(0.4)  # let the grant in hand run out
    with pytest.raises(mikro.GrantError, match="revoked"):
        await anyio.to_thread.run_sync(lambda: view.values)


@pytest.mark.anyio
async def test_a_failed_bare_compute_stops_sharing_whole_shards(
    make_provider: Callable[..., CountingProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain computation that fails midway never makes its remaining chunk reads; once no read came
    for a while, a slice fetches only its chunk again (and the failure is the user's own error)."""
    monkeypatch.setattr(_read, "FULL_READ_IDLE_SECONDS", 0.1)
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values)
    store = GrantedStore(provider)
    view = open_view(store, layout)

    def fail(block: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        raise RuntimeError("a user's function failed")

    failing = view.data.map_blocks(fail, dtype="uint16").sum()
    with pytest.raises(RuntimeError, match="a user's function failed"):
        await anyio.to_thread.run_sync(lambda: failing.compute(scheduler="sync"))
    await anyio.sleep(0.3)
    before = store.stats.snapshot()
    part = await anyio.to_thread.run_sync(lambda: view[2, :16, :32].values)
    np.testing.assert_array_equal(part, values[2, :16, :32])
    after = store.stats.snapshot()
    chunk = 16 * 32 * 2  # one raw uint16 chunk
    index = ShardIndex.nbytes(layout.chunks_per_shard)
    assert after["bytes_read"] - before["bytes_read"] <= chunk + index  # not its whole shard


@pytest.mark.anyio
@pytest.mark.parametrize("compression", COMPRESSIONS)
async def test_plane_fetches_only_its_chunks(
    make_provider: Callable[..., CountingProvider], compression: Any
) -> None:
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression=compression)
    chunk_bytes, shards = plane_chunk_bytes(GrantedStore(provider), layout, z=2)
    zarr_json = len(GrantedStore(provider).get("0/zarr.json") or b"")

    reader = GrantedStore(provider)
    plane = await compute(open_view(reader, layout)[2])
    np.testing.assert_array_equal(plane.values, values[2])
    stats = reader.stats.snapshot()
    # The index of each shard the plane crosses, then each of the plane's chunks (one dask task each).
    chunks_in_plane = math.prod(math.ceil(n / c) for n, c in zip(SHAPE[1:], CHUNKS[1:], strict=True))
    assert stats["gets"] == 1 + shards + chunks_in_plane
    index_bytes = ShardIndex.nbytes(layout.chunks_per_shard)
    assert stats["bytes_read"] == zarr_json + shards * index_bytes + chunk_bytes

    # A small crop inside one chunk: one index, one chunk.
    reader = GrantedStore(provider)
    crop = await compute(open_view(reader, layout)[2, 3:10, 40:50])
    np.testing.assert_array_equal(crop.values, values[2, 3:10, 40:50])
    assert reader.stats.snapshot()["gets"] == 1 + 2


@pytest.mark.parametrize("compression", [None, "blosc-lz4"])
def test_region_needing_most_of_a_shard_fetches_all_of_it(
    make_provider: Callable[..., CountingProvider], compression: Any
) -> None:
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression=compression)
    sizes = stored_sizes(GrantedStore(provider))
    store = GrantedStore(provider)
    reader = ShardedArrayReader(
        store, shape=layout.shape, chunks=layout.chunks, shards=layout.shards, dtype=layout.dtype
    )

    np.testing.assert_array_equal(reader[0:3, 0:32, 0:64], values[0:3, 0:32, 0:64])  # 12 of 16 chunks
    stats = store.stats.snapshot()
    index_bytes = ShardIndex.nbytes(layout.chunks_per_shard)
    assert stats["gets"] == 1 + 2  # zarr.json; the index, then the whole shard rather than 12 chunks
    assert stats["bytes_read"] == sizes["0/zarr.json"] + index_bytes + sizes["0/c.0.0.0"]

    np.testing.assert_array_equal(reader[0:1, 0:32, 0:64], values[0:1, 0:32, 0:64])  # 4 of 16 chunks
    stats = store.stats.snapshot()
    assert stats["gets"] == 3 + 1  # the index is known: one range holding the plane's adjacent chunks


@pytest.mark.parametrize("compression", [None, "blosc-lz4"])
@pytest.mark.parametrize("piece_bytes", [1001, 4096])
def test_shards_arriving_in_small_pieces(
    make_provider: Callable[..., CountingProvider],
    monkeypatch: pytest.MonkeyPatch,
    compression: Any,
    piece_bytes: int,
) -> None:
    """Pieces that end inside a chunk, or inside a pixel, still put every byte in its place."""
    monkeypatch.setattr(_fetch, "PIECE_BYTES", piece_bytes)
    provider = make_provider()
    values = values_for((5, 37, 90))
    layout = put_image(
        GrantedStore(provider), values, chunks=(2, 16, 32), shards=(4, 32, 64), compression=compression
    )
    reader = ShardedArrayReader(
        GrantedStore(provider),
        shape=layout.shape,
        chunks=layout.chunks,
        shards=layout.shards,
        dtype=layout.dtype,
    )
    np.testing.assert_array_equal(reader[...], values)  # no index known yet
    np.testing.assert_array_equal(reader[...], values)  # every index known: chunks placed as they come
    np.testing.assert_array_equal(reader[1:4, 5:33], values[1:4, 5:33])


@pytest.mark.parametrize("dtype", ["uint8", "float32", "bool"])
def test_other_dtypes(make_provider: Callable[..., CountingProvider], dtype: str) -> None:
    provider = make_provider()
    values = values_for(SHAPE, dtype="uint16").astype(dtype) if dtype != "bool" else values_for(SHAPE) > 2000
    layout = put_image(GrantedStore(provider), values)
    reader = ShardedArrayReader(
        GrantedStore(provider),
        shape=layout.shape,
        chunks=layout.chunks,
        shards=layout.shards,
        dtype=layout.dtype,
    )
    got = reader[...]
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, values)


def test_shards_in_another_layout_are_read_right(make_provider: Callable[..., CountingProvider]) -> None:
    """Raw chunks in reverse order, one never written: a whole-shard read guesses mikro's layout, learns
    from the index at the end of the same GET, refetches what it misplaced, and stops guessing."""
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, reorder=True, drop=(1, 1, 0))
    expected = values.copy()
    for pos in layout.shard_positions():  # chunk (1, 1, 0) of every shard reads as the fill value
        z0, y0, x0 = (p * s + d * c for p, s, d, c in zip(pos, SHARDS, (1, 1, 0), CHUNKS, strict=True))
        expected[z0 : z0 + 1, y0 : y0 + 16, x0 : x0 + 32] = 0

    store = GrantedStore(provider)
    reader = ShardedArrayReader(
        store, shape=layout.shape, chunks=layout.chunks, shards=layout.shards, dtype="uint16"
    )
    np.testing.assert_array_equal(reader[...], expected)
    if provider.issued[0].kind == "s3":
        # zarr.json; shard 1: the stream, then one range with the misplaced chunks (reversed: all
        # adjacent); shards 2 to 8: no more guessing, one GET each into one buffer (the index with it).
        assert store.stats.snapshot()["gets"] == 1 + 2 + 7
    else:
        # A folder store's file is read index first, then each chunk from where it says: nothing guessed.
        assert store.stats.snapshot()["gets"] == 1 + 8

    if provider.issued[0].kind == "file":  # the hand-made shards are valid zarr: zarr-python agrees
        import zarr

        plain = zarr.open_array(provider.issued[0].path + "/0", mode="r")
        np.testing.assert_array_equal(plain[...], expected)


def test_reader_indexes_like_numpy(make_provider: Callable[..., CountingProvider]) -> None:
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression="zstd")
    reader = ShardedArrayReader(
        GrantedStore(provider), shape=layout.shape, chunks=layout.chunks, shards=layout.shards, dtype="uint16"
    )
    mask = np.zeros(SHAPE[2], dtype=bool)
    mask[[3, 40, 69]] = True
    keys: list[Any] = [
        -1,
        (slice(None, None, -2), 7),
        (Ellipsis, slice(60, 5, -7)),
        (None, 2, slice(10, 40), None),
        ([0, 5, 2], slice(1, 49, 3)),
        (np.array([-1, 0]), np.array([3, 49]), 0),
        (slice(None), slice(None), mask),
        (slice(3, 3), 0),
        (1, [[0, 1], [2, 3]]),
        (np.array([[True] * 50] * 6), 0),  # a 2-D mask: not a box, read whole and indexed by numpy
    ]
    for key in keys:
        np.testing.assert_array_equal(reader[key], values[key], err_msg=repr(key))
    with pytest.raises(IndexError):
        reader[6]
    with pytest.raises(IndexError):
        reader[0, 0, 0, 0]


@pytest.mark.anyio
async def test_whole_image_compute_keeps_labels(make_provider: Callable[..., CountingProvider]) -> None:
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values)
    view = open_view(GrantedStore(provider), layout)

    got = await compute(view)
    expected = await anyio.to_thread.run_sync(view.compute)
    assert got.dims == expected.dims and got.name == "img" and got.attrs == {"representation": "7"}
    np.testing.assert_array_equal(got.coords["x"].values, expected.coords["x"].values)
    np.testing.assert_array_equal(got.values, expected.values)
    got.values[0, 0, 0] = 1  # the caller owns a writable array
    np.testing.assert_array_equal(await compute(view.data), values)
    np.testing.assert_array_equal((await compute(view.T)).values, values.T)


@pytest.mark.anyio
async def test_whole_image_read_raises_the_grant_error_itself(
    make_provider: Callable[..., CountingProvider],
) -> None:
    provider = make_provider(ttl=0.4)
    store = GrantedStore(provider)
    values = values_for(SHAPE)
    layout = put_image(store, values)
    view = open_view(store, layout)
    np.testing.assert_array_equal((await compute(view[0])).values, values[0])  # metadata now known
    provider.revoked = True
    await anyio.sleep(0.4)  # let the grant in hand run out
    with pytest.raises(mikro.GrantError, match="revoked"):
        await compute(view)


def test_whole_reads_split_very_large_shards() -> None:
    def provider() -> Any:
        raise AssertionError("no I/O expected")

    reader = ShardedArrayReader(
        GrantedStore(provider),
        shape=(64, 4096, 4096),
        chunks=(1, 1024, 1024),
        shards=(64, 4096, 4096),
        dtype="uint16",
    )
    task = reader.block_shape()
    assert math.prod(task) * 2 <= 128 * 2**20
    assert all(s % t == 0 and t % c == 0 for s, t, c in zip(reader.shards, task, reader.chunks, strict=True))
    small = ShardedArrayReader(
        GrantedStore(provider), shape=(3, 100, 100), chunks=(1, 50, 50), shards=(4, 100, 100), dtype="uint16"
    )
    assert small.block_shape() == (3, 100, 100)  # one shard, clipped to the image


def test_copy_flat_matches_numpy_flat_assignment() -> None:
    rng = np.random.default_rng(1)
    base = np.zeros((4, 6, 10, 12), dtype=np.uint8)
    for _ in range(200):
        dst = base[1:4, :, 2:9, :]  # strided, like a chunk's place in a larger output
        dst[...] = 0
        n = dst.size
        start = int(rng.integers(0, n))
        stop = int(rng.integers(start, n + 1))
        src = rng.integers(1, 255, stop - start).astype(np.uint8)
        copy_flat(dst, src, start)
        expected = np.zeros(dst.shape, dtype=np.uint8)
        expected.reshape(-1)[start:stop] = src
        np.testing.assert_array_equal(dst, expected)


def test_coalesce_merges_neighbours_only() -> None:
    assert coalesce([(10, 20), (0, 10), (30, 40)], max_gap=0) == [(0, 20), (30, 40)]
    assert coalesce([(0, 10), (15, 20), (200, 300)], max_gap=5) == [(0, 20), (200, 300)]
    assert coalesce([]) == []


@pytest.mark.anyio
async def test_shards_shared_by_chunk_tasks_stay_within_the_memory_bound(
    make_provider: Callable[..., CountingProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one shard only, chunk tasks that come late fetch their shard again: still right."""
    monkeypatch.setattr(_read, "SHARD_CACHE_BYTES", 1)
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression="zstd")
    reader = GrantedStore(provider)
    got = await compute(open_view(reader, layout).astype("float64") * 2)
    np.testing.assert_array_equal(got.values, values * 2.0)
    assert reader.stats.snapshot()["gets"] >= 1 + 8


@pytest.mark.anyio
async def test_image_opened_twice_reads_whole_shards_either_way(
    make_provider: Callable[..., CountingProvider],
) -> None:
    """``rep.data`` taken twice gives two views of one dask name (and their own readers); computing on
    the older still shares whole shards, and the older view itself is still read without dask, by its
    own reader (not another store's that happens to share the name)."""
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values)
    store = GrantedStore(provider)

    def view() -> Any:
        return open_dataarray(
            store, shape=layout.shape, chunks=CHUNKS, shards=SHARDS, dtype="uint16", dims="zyx", token="s1"
        )

    first, second = view(), view()
    assert first.data.name == second.data.name
    assert int(await compute(first.max())) == int(values.max())
    assert store.stats.snapshot()["gets"] == 1 + 8
    np.testing.assert_array_equal((await compute(first)).values, values)
    assert store.stats.snapshot()["gets"] == 1 + 8 + 8  # the first view's reader knows zarr.json


@pytest.mark.anyio
async def test_views_named_alike_read_their_own_store(make_provider: Callable[..., CountingProvider]) -> None:
    """Two images that happen to share a dask name (one store id on two servers) each read their own."""
    images = []
    for seed in (1, 2):
        values = values_for(SHAPE, seed=seed)
        store = GrantedStore(make_provider())
        layout = put_image(store, values)
        view = open_dataarray(
            store, shape=layout.shape, chunks=CHUNKS, shards=SHARDS, dtype="uint16", dims="zyx", token="same"
        )
        images.append((values, view))
    for values, view in images:
        np.testing.assert_array_equal((await compute(view)).values, values)
        assert int(await compute(view.max())) == int(values.max())
