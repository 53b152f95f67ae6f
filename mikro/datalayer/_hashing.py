"""Content hashes: which algorithms, how they are spelled (``<algorithm>:<hex digest>``), files hashed.

New content hashes (a `File`'s, an ingested source's fingerprint) are BLAKE3: several times faster than
SHA-256 on one core (~5 GB/s with AVX-512 against ~1 GB/s with SHA-NI here), which an ingest pays for
every byte it reads. SHA-256 stays readable: files stored before keep their ``sha256:`` hashes and are
verified with them, and the ingest computes a source's SHA-256 only for users with fingerprints from
before (see `mikro.ingest._sources`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import blake3

from mikro._exceptions import ValidationError

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "CONTENT_HASH_ALGORITHM",
    "HASHERS",
    "Hasher",
    "algorithm_of",
    "feed",
    "hash_file",
    "new_hasher",
    "spelled",
]

#: The algorithm of every new content hash.
CONTENT_HASH_ALGORITHM = "blake3"
#: Bytes read at a time: small enough to be hashed from the CPU's cache right after the copy into it.
READ_BYTES = 1 << 20


class Hasher(Protocol):
    def update(self, data: Buffer, /) -> object: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


HASHERS: dict[str, Callable[[], Hasher]] = {
    # One thread: the ingest hashes ahead while other files upload, on every core already.
    "blake3": lambda: blake3.blake3(max_threads=1),
    "sha256": hashlib.sha256,
}


def new_hasher(algorithm: str) -> Hasher:
    return HASHERS[algorithm]()


def spelled(algorithm: str, hasher: Hasher) -> str:
    return f"{algorithm}:{hasher.hexdigest()}"


def algorithm_of(content_hash: str) -> str:
    """The algorithm a spelled content hash was made with (ValidationError for one mikro cannot make)."""
    algorithm, sep, _ = content_hash.partition(":")
    if not sep or algorithm not in HASHERS:
        raise ValidationError(f"not a content hash mikro can check: {content_hash!r}")
    return algorithm


def hash_file(path: str | os.PathLike[str], algorithms: Sequence[str]) -> list[Hasher]:
    """The file's bytes through a new hasher of each algorithm, read once (blocking)."""
    hashers = [new_hasher(a) for a in algorithms]
    feed(path, hashers)
    return hashers


_buffers = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer: a new megabyte for every file (zeroed, its pages faulted in) cost a
    small file's fingerprint more than hashing it."""
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(READ_BYTES))
    return view


def feed(path: str | os.PathLike[str], hashers: Sequence[Hasher]) -> None:
    """Pass the file's bytes to every hasher, read once (blocking). Read into one buffer rather than
    mapped: a file truncated meanwhile is then an error here, not a SIGBUS."""
    view = _read_buffer()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            for hasher in hashers:
                hasher.update(view[:n])
