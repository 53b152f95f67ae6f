"""A folder store writes an object in calls of at most `WRITE_PIECE_BYTES`, whatever its size: a large
call has the kernel back its page cache with large folios, which a VM that hands free memory back to
its host must back again (several CPU-s per GiB written). The bytes on disk are the object's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mikro.datalayer import GrantedStore, _staging
from mikro.datalayer._layout import choose_layout
from mikro.datalayer._shard import ChunkCodec, shard_payload
from mikro.datalayer._staging import WRITE_PIECE_BYTES
from tests.datalayer.conftest import CountingProvider


class _RecordedOs:
    """The os module, with the sizes of its ``write`` calls recorded."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        self.sizes.append(len(memoryview(data).cast("B")))
        return os.write(fd, data)


@pytest.mark.parametrize("store_kind", ["file"])  # pieces are what a folder store's writes are made of
def test_objects_are_written_in_pieces(
    make_provider: Callable[..., CountingProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = _RecordedOs()
    monkeypatch.setattr(_staging, "os", recorded)
    provider = make_provider()
    store, root = GrantedStore(provider), Path(provider().path)
    body = np.random.default_rng(0).bytes(3 * WRITE_PIECE_BYTES + 17)
    store.put("blob", body)
    assert (root / "blob").read_bytes() == body
    assert len(recorded.sizes) == 4 and max(recorded.sizes) == WRITE_PIECE_BYTES

    # An uncompressed shard goes out chunk by chunk from the pixels, each chunk in pieces too.
    recorded.sizes.clear()
    values = np.random.default_rng(1).integers(0, 2**16, (2, 1024, 1024), dtype=np.uint16)
    layout = choose_layout(values.shape, values.dtype, ("c", "y", "x"), compression=None)
    payload = shard_payload(values, layout, ChunkCodec.for_layout(layout))
    store.put("shard", payload)
    written = (root / "shard").read_bytes()
    assert len(written) == len(payload) and sum(recorded.sizes) == len(payload)
    assert max(recorded.sizes) <= WRITE_PIECE_BYTES
    chunk = np.frombuffer(written[: values[0].nbytes], dtype="<u2").reshape(1024, 1024)
    np.testing.assert_array_equal(chunk, values[0])
