"""Files copied into a folder store by the kernel: whole, hashed as stored, never half visible."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from mikro.datalayer._local_copy import COPY_CHUNK_BYTES, copy_file

SIZE = 2 * COPY_CHUNK_BYTES + 12_345


def _source(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("kernel", [True, False], ids=["copy_file_range", "read-write"])
def test_a_copy_is_whole_and_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: bool) -> None:
    if not kernel:
        # As across file systems on old kernels: the copy falls back to reading and writing.
        def refuse(*args: object) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    source, data = _source(tmp_path)
    target = tmp_path / "store" / "key" / "file"
    seen: list[tuple[int, int]] = []
    hasher = hashlib.sha256()

    size = copy_file(str(source), str(target), hasher=hasher, progress=lambda d, t: seen.append((d, t)))

    assert size == SIZE and target.read_bytes() == data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert seen[-1] == (SIZE, SIZE) and len(seen) == 3
    assert os.listdir(target.parent) == ["file"]  # no temporary left beside it


def test_a_cancelled_copy_leaves_nothing(tmp_path: Path) -> None:
    source, _ = _source(tmp_path)
    target = tmp_path / "store" / "file"
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_file(str(source), str(target), checkpoint=checkpoint)
    assert os.listdir(target.parent) == []
