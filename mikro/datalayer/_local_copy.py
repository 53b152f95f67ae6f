"""A file copied into a new folder store by the kernel (``copy_file_range``).

Keeping an original on a folder store is a file copy. Through obstore's ``LocalStore`` writer it cost
3-6 s of CPU per GiB here (each part read into Python, handed to obstore, written); ``copy_file_range``
copies in the kernel (0.35 s/GiB, and on file systems that share extents, nothing at all). The copy is
made in place, not beside the object and renamed over it: a file's store is fresh and nothing reads it
before the server records the file, which it does only once the copy is complete. A copy that fails or
is cancelled removes what it wrote.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from mikro.datalayer._hashing import Hasher, feed
from mikro.datalayer._staging import make_folder

__all__ = ["COPY_CHUNK_BYTES", "copy_file"]

#: Bytes copied per call: the cancellation checkpoint and the progress callback run between calls.
COPY_CHUNK_BYTES = 8 * 2**20

#: Bare descriptors: open()'s file objects add an fstat, a tty check and a seek per file (a small
#: original's copy is a few system calls). O_BINARY matters on Windows only.
_SOURCE_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_TARGET_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)

Checkpoint = Callable[[], None]
Progress = Callable[[int, int], None]


def _copy(src: int, dst: int, total: int, checkpoint: Checkpoint | None, progress: Progress | None) -> int:
    done = 0
    kernel = hasattr(os, "copy_file_range")
    while True:
        if checkpoint is not None:
            checkpoint()
        n = 0
        if kernel:
            try:
                n = os.copy_file_range(src, dst, COPY_CHUNK_BYTES)
            except OSError:
                # Not across these file systems (old kernels: EXDEV), or not supported: read and write.
                kernel = False
        if not kernel:
            chunk = os.read(src, COPY_CHUNK_BYTES)
            n = len(chunk)
            if n:
                os.write(dst, chunk)
        if n == 0:
            return done
        done += n
        if progress is not None:
            progress(done, total)


def copy_file(
    source: str,
    target: str,
    *,
    hasher: Hasher | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> int:
    """Copy ``source`` to ``target`` (made with its folders, replacing what is there); returns the bytes
    copied. With ``hasher``, the copy is hashed (its pages are still cached), so the hash is of what is
    stored. Blocking; on failure ``target`` is removed."""
    src = os.open(source, _SOURCE_FLAGS)
    try:
        try:
            dst = os.open(target, _TARGET_FLAGS, 0o666)
        except FileNotFoundError:
            make_folder(os.path.dirname(target))
            dst = os.open(target, _TARGET_FLAGS, 0o666)
        try:
            try:
                size = _copy(src, dst, os.fstat(src).st_size, checkpoint, progress)
            finally:
                os.close(dst)
            if hasher is not None:
                feed(target, [hasher])
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
    finally:
        os.close(src)
    return size
