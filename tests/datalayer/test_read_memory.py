"""Whole-image results reuse the memory of dropped results, never memory something still views."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest

from mikro.datalayer import GrantedStore, _fetch, _result_memory, compute
from mikro.datalayer._result_memory import MIN_POOLED_BYTES, result_array
from tests.datalayer.conftest import CountingProvider
from tests.datalayer.test_read_fast import open_view, put_image, values_for

SHAPE = (3, 1024, 1024)  # 6 MiB of uint16: large enough for mikro to keep its memory after use
CHUNKS = (1, 256, 512)
SHARDS = (1, 1024, 1024)


@pytest.fixture(autouse=True)
def _empty_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIKRO_KEEP_RESULT_MB", raising=False)
    monkeypatch.setattr(_result_memory, "_kept", _result_memory._Kept())


@pytest.mark.anyio
async def test_a_dropped_result_memory_is_reused_and_a_viewed_one_is_not(
    make_provider: Callable[..., CountingProvider],
) -> None:
    provider = make_provider()
    values = values_for(SHAPE, seed=3)
    layout = put_image(GrantedStore(provider), values, chunks=CHUNKS, shards=SHARDS)
    view = open_view(GrantedStore(provider), layout)

    got = await compute(view)
    np.testing.assert_array_equal(got.values, values)
    address = got.values.ctypes.data
    del got
    gc.collect()

    # Memory given back to the system would go to this array; kept memory goes to the next result.
    placeholder = np.ones(SHAPE, dtype="uint16")
    again = await compute(view)
    assert again.values.ctypes.data == address  # no new memory to fault in
    assert not np.shares_memory(placeholder, again.values)
    np.testing.assert_array_equal(again.values, values)

    plane = again.values[1]  # only a view of the result is kept
    del again
    gc.collect()
    third = await compute(view)
    assert not np.shares_memory(third.values, plane)
    third.values[...] = 0
    np.testing.assert_array_equal(plane, values[1])
    np.testing.assert_array_equal((await compute(view)).values, values)


def test_live_results_never_share_memory() -> None:
    shape = (4, 1024, 1024)
    a, a_new = result_array(shape, "uint16")
    b, b_new = result_array(shape, "uint16")
    assert a_new and b_new
    assert not np.shares_memory(a, b)
    a[...] = 1
    b[...] = 2
    assert int(a.max()) == 1 and int(b.min()) == 2
    assert a.flags.c_contiguous and a.flags.writeable and a.shape == shape and a.dtype == np.uint16

    address = a.ctypes.data
    del a
    c, c_new = result_array(shape, np.dtype(">u2"))  # same size, another dtype: the memory fits
    assert not c_new and c.ctypes.data == address
    c[...] = 513
    assert c.dtype == np.dtype(">u2") and int(c.sum()) == 513 * c.size
    assert not np.shares_memory(b, c)


def test_small_results_and_disabled_keeping_are_plain_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    small, _ = result_array((MIN_POOLED_BYTES // 2 - 1,), "uint8")
    assert small.base is None  # a plain numpy array
    monkeypatch.setenv("MIKRO_KEEP_RESULT_MB", "0")
    large, new = result_array((8, 1024, 1024), "uint8")
    assert new and large.base is None


def test_results_larger_than_the_limit_or_long_unused_are_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIKRO_KEEP_RESULT_MB", "16")
    big, _ = result_array((32, 1024, 1024), "uint8")
    assert big.base is None  # more than may be kept: not mikro's memory at all

    first, _ = result_array((8, 1024, 1024), "uint8")
    second, _ = result_array((12, 1024, 1024), "uint8")
    del first, second  # 20 MiB released, 16 may be kept: the older one is unmapped
    kept: Any = _result_memory._kept
    assert [m.size for m in kept._entries] == [12 * 2**20]

    monkeypatch.setattr(_result_memory, "KEEP_SECONDS", 0.0)
    again, new = result_array((12, 1024, 1024), "uint8")  # expiry runs before the lookup
    assert new and kept._entries == []
    del again


def test_whole_objects_longer_than_expected_are_read_whole(
    store: GrantedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard fetched whole goes into memory sized for it; one that is longer (compressed chunks that
    grew) still arrives complete."""
    monkeypatch.setattr(_fetch, "PIECE_BYTES", 64 * 2**10)
    data = np.random.default_rng(5).integers(0, 256, 6 * 2**20 + 12345, dtype=np.uint8).tobytes()
    store.put("blob", data)
    for capacity in (len(data), len(data) + 7, 5 * 2**20, 1000):
        got = _fetch.fetch_object(store, "blob", capacity)
        assert got is not None and got.nbytes == len(data) and bytes(got) == data
    assert _fetch.fetch_object(store, "missing", 1000) is None
    assert store.stats.snapshot()["gets"] == 5


@pytest.mark.anyio
async def test_a_plain_values_is_the_one_array_the_read_fills(
    make_provider: Callable[..., CountingProvider],
) -> None:
    """``rep.data.values`` in a script: the image read into one array is the result, not copied by
    dask's concatenation into a second one; so its memory is mikro's and the next read reuses it."""
    provider = make_provider()
    values = values_for(SHAPE, seed=4)
    layout = put_image(GrantedStore(provider), values, chunks=CHUNKS, shards=SHARDS, compression="blosc-lz4")
    view = open_view(GrantedStore(provider), layout)

    got = await anyio.to_thread.run_sync(lambda: view.values)
    np.testing.assert_array_equal(got, values)
    address = got.ctypes.data
    del got
    gc.collect()
    again = await compute(view)
    assert again.values.ctypes.data == address
    np.testing.assert_array_equal(again.values, values)


def test_released_memory_is_given_to_the_kernel_only_when_left_unused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dropped result's pages stay as they are while the next result may take them (writing into pages
    marked MADV_FREE costs the kernel a page-table walk again); left unused, they are marked, and the
    thread that marks them ends."""
    monkeypatch.setattr(_result_memory, "FREE_AFTER_SECONDS", 0.3)
    kept: Any = _result_memory._kept

    def marker() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "mikro-result-memory"]

    first, _ = result_array((8, 1024, 1024), "uint8")
    first[...] = 7
    address = first.ctypes.data
    del first
    (memory,) = [m for m in kept._entries if m.size == 8 * 2**20]
    assert not memory.freed
    again, new = result_array((8, 1024, 1024), "uint8")  # taken back at once: never marked
    assert not new and again.ctypes.data == address and not memory.freed
    del again

    deadline = time.monotonic() + 10
    while not memory.freed or marker():
        assert time.monotonic() < deadline, "released memory never marked, or the marking thread runs on"
        time.sleep(0.02)
    third, new = result_array((8, 1024, 1024), "uint8")  # still reusable once marked
    assert not new and third.ctypes.data == address
    third[...] = 1
    assert int(third.sum()) == third.size


def test_a_script_that_keeps_a_result_until_it_exits_ends() -> None:
    """A result kept in a module global is released while the interpreter exits: then no thread can be
    started to mark its memory (on Python 3.11 starting one waited forever, and the script never ended)."""
    script = (
        "from mikro.datalayer._result_memory import result_array\n"
        "kept, _ = result_array((8, 1024, 1024), 'uint8')\n"
        "kept[...] = 3\n"
        "print(int(kept[-1, -1, -1]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "3"), done.stderr


@pytest.mark.anyio
async def test_whole_reads_into_new_memory_are_exact(make_provider: Callable[..., CountingProvider]) -> None:
    """New memory (results, and whole shards the chunk tasks share) is backed with pages before the
    read fills it."""
    provider = make_provider()
    values = values_for((4, 1024, 1024), seed=7)  # two blocks of 4 MiB: mikro's own memory
    layout = put_image(GrantedStore(provider), values, chunks=CHUNKS, shards=(2, 1024, 1024))
    view = open_view(GrantedStore(provider), layout)
    first, second = await compute(view), await compute(view)  # both in new memory
    np.testing.assert_array_equal(first.values, values)
    np.testing.assert_array_equal(second.values, values)
    assert int((await compute(view.max())).values) == int(values.max())


@pytest.mark.anyio
async def test_plain_results_and_kept_chunks_stay_the_users(
    make_provider: Callable[..., CountingProvider],
) -> None:
    """Two ``.values`` held at once are separate arrays; a chunk the user keeps from a computation that
    read every chunk (a view of mikro's memory) keeps its values while later reads reuse memory."""
    import dask

    provider = make_provider()
    values = values_for(SHAPE, seed=6)
    layout = put_image(GrantedStore(provider), values, chunks=CHUNKS, shards=SHARDS, compression=None)
    view = open_view(GrantedStore(provider), layout)

    def plain() -> tuple[Any, Any, Any]:
        first, second = view.values, view.values
        chunks = dask.compute(*view.data.to_delayed().ravel())  # every chunk, each its own result
        return first, second, chunks[0]

    first, second, chunk = await anyio.to_thread.run_sync(plain)
    assert not np.shares_memory(first, second)
    first[...] = 0
    np.testing.assert_array_equal(second, values)
    np.testing.assert_array_equal(chunk, values[:1, :256, :512])
    del first, second
    gc.collect()
    for _ in range(3):  # later reads take the memory released above, never the kept chunk's
        again = await anyio.to_thread.run_sync(lambda: view.values)
        np.testing.assert_array_equal(again, values)
        assert not np.shares_memory(again, chunk)
        again[...] = 1
        del again
        gc.collect()
    np.testing.assert_array_equal(chunk, values[:1, :256, :512])
