"""Files kept as they are: streamed up (multipart) and down, hashed on the way, never whole in memory.

A file is one object, :data:`FILE_KEY`, under its MEDIA grant's prefix. Every function here blocks: the
session runs them in a worker thread (obstore's sync API, see DESIGN.md), passing ``checkpoint`` (which
raises once the caller is cancelled: anyio's ``from_thread.check_cancelled``) and ``progress``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from mikro._exceptions import StorageError, ValidationError
from mikro.datalayer._hashing import CONTENT_HASH_ALGORITHM, algorithm_of, new_hasher, spelled
from mikro.datalayer._staging import staged, write_all
from mikro.datalayer._store import GrantedStore

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "FILE_KEY",
    "PARTS_IN_FLIGHT",
    "PART_BYTES",
    "PIECE_BYTES",
    "FileSource",
    "FileWritten",
    "download_file",
    "source_size",
    "upload_file",
    "verified_pieces",
]

#: The object's key under a MEDIA grant's prefix.
FILE_KEY = "file"
#: Bytes per multipart part (S3 wants at least 5 MiB but the last); smaller files go up in one PUT.
PART_BYTES = 8 * 1024 * 1024
#: Parts uploaded at once: the upload holds at most (PARTS_IN_FLIGHT + 1) * PART_BYTES in memory.
PARTS_IN_FLIGHT = 4
#: Bytes handed to a reader at a time (uploads read whole parts: obstore then copies nothing more).
PIECE_BYTES = 4 * 1024 * 1024

FileSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
Checkpoint = Callable[[], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FileWritten:
    size: int
    content_hash: str


def source_size(source: FileSource) -> int:
    """Bytes in ``source`` (a path or bytes); a path that is not a readable file is a ValidationError."""
    if isinstance(source, bytes | bytearray | memoryview):
        return memoryview(source).nbytes
    # One stat, not Path.is_file's and then Path.stat's: an ingest's originals ask for each file's size.
    try:
        found = os.stat(source)
    except (OSError, ValueError):
        found = None
    if found is None or not stat.S_ISREG(found.st_mode):
        raise ValidationError(f"{os.fspath(source)} is not a file")
    return found.st_size


def _pieces(source: FileSource) -> Iterator[Buffer]:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        for start in range(0, view.nbytes, PART_BYTES):
            yield view[start : start + PART_BYTES]
        return
    with open(source, "rb") as f:
        # A fresh bytes object per part: obstore may keep a reference to it until the part is sent.
        while piece := f.read(PART_BYTES):
            yield piece


def upload_file(
    store: GrantedStore,
    source: FileSource,
    *,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    content_hash: str | None = None,
) -> FileWritten:
    """Put ``source`` at :data:`FILE_KEY`, hashing it on the way unless its ``content_hash`` is known
    (blocking). A path goes to a folder store as a kernel copy (`GrantedStore.copy_file_in`)."""
    hasher = None if content_hash is not None else new_hasher(CONTENT_HASH_ALGORITHM)

    def spelled_hash() -> str:
        return spelled(CONTENT_HASH_ALGORITHM, hasher) if hasher is not None else str(content_hash)

    if not isinstance(source, bytes | bytearray | memoryview):
        source_size(source)  # a ValidationError for what is not a file
        copied = store.copy_file_in(
            FILE_KEY, os.fspath(source), hasher=hasher, checkpoint=checkpoint, progress=progress
        )
        if copied is not None:
            return FileWritten(size=copied, content_hash=spelled_hash())
    total = source_size(source)
    done = 0

    def pieces() -> Iterator[Buffer]:
        nonlocal done
        for piece in _pieces(source):
            if checkpoint is not None:
                checkpoint()
            if hasher is not None:
                hasher.update(piece)
            yield piece
            done += memoryview(piece).nbytes
            if progress is not None:
                progress(done, total)

    size = store.write_pieces(FILE_KEY, pieces(), part_bytes=PART_BYTES, parts_in_flight=PARTS_IN_FLIGHT)
    return FileWritten(size=size, content_hash=spelled_hash())


def verified_pieces(
    store: GrantedStore, *, size: int, content_hash: str, checkpoint: Checkpoint | None = None
) -> Iterator[Buffer]:
    """The file's bytes piece by piece (obstore's buffers, not copied); after the last one,
    StorageError if they are not the file's (checked with the algorithm its ``content_hash`` names)."""
    algorithm = algorithm_of(content_hash)
    hasher = new_hasher(algorithm)
    got = 0
    for piece in store.stream(FILE_KEY, piece_bytes=PIECE_BYTES):
        if checkpoint is not None:
            checkpoint()
        hasher.update(piece)
        got += memoryview(piece).nbytes
        yield piece
    if got != size or spelled(algorithm, hasher) != content_hash:
        raise StorageError(
            f"the stored file does not match its record: {got} bytes with hash {spelled(algorithm, hasher)}, "
            f"expected {size} bytes with hash {content_hash}"
        )


def download_file(
    store: GrantedStore,
    path: str | os.PathLike[str],
    *,
    size: int,
    content_hash: str,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write the file to ``path``: streamed to a temporary file beside it, renamed into place once its
    hash is verified, so ``path`` never holds a partial or wrong file (blocking)."""
    target = Path(path)
    with staged(str(target)) as (fd, _):
        done = 0
        for piece in verified_pieces(store, size=size, content_hash=content_hash, checkpoint=checkpoint):
            write_all(fd, piece)
            done += memoryview(piece).nbytes
            if progress is not None:
                progress(done, size)
    return target
