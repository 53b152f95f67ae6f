"""A source's fingerprint is the hash of its own bytes, whatever its thread hashed before it."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import numpy as np

from mikro.ingest._sources import fingerprint

# Around the read buffer's size (1 MiB): larger files first, so that a file hashed after them in the
# same thread finds their bytes in the buffer it reads into.
SIZES = [3 * 2**20 + 17, 5, 2**20, 0, 2**20 + 1, 4096, 2**20 - 1]


def _files(folder: Path) -> list[Path]:
    rng = np.random.default_rng(16)
    paths = []
    for i, size in enumerate(SIZES):
        path = folder / f"f{i}.bin"
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        paths.append(path)
    return paths


def _expected(path: Path) -> tuple[str, str, int]:
    data = path.read_bytes()
    return f"blake3:{blake3.blake3(data).hexdigest()}", hashlib.sha256(data).hexdigest(), len(data)


def test_each_file_hashed_after_another_in_one_thread_gets_its_own_hash(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    for path in paths + paths[::-1]:
        fp = fingerprint(path, legacy=True)
        assert (fp.digest, fp.legacy, fp.size) == _expected(path)


def test_files_hashed_in_many_threads_at_once_get_their_own_hashes(tmp_path: Path) -> None:
    paths = _files(tmp_path) * 8
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(fingerprint, paths))
    assert [(fp.digest, fp.size) for fp in found] == [_expected(p)[::2] for p in paths]
