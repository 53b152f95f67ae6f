"""A file copied into a folder store by the kernel (``copy_file_range``), never half visible.

Keeping an original on a folder store is a file copy. Through obstore's ``LocalStore`` writer it cost
3-6 s of CPU per GiB here (each part read into Python, handed to obstore, written); ``copy_file_range``
copies in the kernel (0.35 s/GiB, and on file systems that share extents, nothing at all). The copy goes
to a temporary name beside the object and is renamed into place once complete, as obstore's own writes
are, so a reader never sees part of a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mikro.datalayer._hashing import Hasher, feed
from mikro.datalayer._staging import staged

__all__ = ["COPY_CHUNK_BYTES", "copy_file"]

#: Bytes copied per call: the cancellation checkpoint and the progress callback run between calls.
COPY_CHUNK_BYTES = 8 * 2**20

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
    copied. With ``hasher``, the copy is hashed (its pages are still cached) before it is renamed into
    place, so the hash is of what is stored. Blocking."""
    with staged(target, make_folders=True) as (dst, temporary), open(source, "rb") as src:
        size = _copy(src.fileno(), dst, os.fstat(src.fileno()).st_size, checkpoint, progress)
        if hasher is not None:
            feed(temporary, [hasher])
    return size
