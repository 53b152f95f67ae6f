"""A folder store's objects read as files: ``preadv`` straight into the memory the bytes belong in.

A folder store's objects are plain files, and the client may open them (the grant names the directory).
Through obstore's ``LocalStore`` a whole 32 MiB shard cost 133 ms of CPU streamed in pieces and 26 ms as
one ``get().bytes()`` (a fresh buffer each time), against 3 ms for reading the file into memory that is
already there (measured here, issue 17). So reads of a folder store open the file and ``preadv`` each
chunk's bytes into their place: raw chunks straight into the rows of the output they belong in (one
copy, by the kernel, the least any reader can do), compressed ones into a warm per-thread buffer and
from there decoded into the output. The file is opened without following a symlink (mikro never writes
one), like the server's reads.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

import numpy as np

__all__ = ["FILE_READS", "LocalFile"]


def _libc_preadv() -> Any:
    """libc's ``preadv`` through ctypes (which releases the GIL around the call), or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.preadv
    except (OSError, AttributeError, TypeError):  # no libc to load by name (Windows), or no preadv
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong]
    fn.restype = ctypes.c_ssize_t
    return fn


_preadv = _libc_preadv()
#: Whether this platform has what these reads need; elsewhere a folder store is read through obstore.
FILE_READS = _preadv is not None and hasattr(os, "preadv") and hasattr(os, "O_NOFOLLOW")


#: At most this many buffers go into one ``preadv`` (POSIX guarantees 16; Linux and macOS take 1024).
def _iov_max() -> int:
    try:
        return max(16, min(1024, os.sysconf("SC_IOV_MAX")))
    except (AttributeError, ValueError, OSError):
        return 16


_IOV_MAX = _iov_max()
_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class LocalFile:
    """One object of a folder store, open for reading; counts the bytes read from it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, _FLAGS)
        try:
            self.size = os.fstat(self.fd).st_size
        except BaseException:
            os.close(self.fd)
            raise
        self.nbytes_read = 0

    def close(self) -> None:
        os.close(self.fd)

    def read_tail(self, nbytes: int) -> bytes:
        """The last ``nbytes`` bytes (all of the file if it is shorter)."""
        n = min(nbytes, self.size)
        data = os.pread(self.fd, n, self.size - n)
        self.nbytes_read += len(data)
        return data

    def read_into(self, buffer: Any, offset: int) -> int:
        """Fill ``buffer`` (writable, contiguous) from the file at ``offset``; returns the bytes read
        (fewer than the buffer holds only at the end of the file)."""
        view = memoryview(buffer).cast("B")
        done = 0
        while done < view.nbytes:
            got = os.preadv(self.fd, [view[done:]], offset + done)
            if got == 0:
                break
            done += got
        self.nbytes_read += done
        return done

    def read_into_place(self, target: np.ndarray[Any, Any], offset: int) -> int | None:
        """Fill ``target`` (a writable view whose rows may lie apart, a chunk's place in a larger array)
        in C order from the file at ``offset``: one ``preadv`` puts every row where it belongs. Returns
        the bytes read, or None if ``target``'s layout does not allow it (nothing was read then)."""
        iov = _iovecs(target)
        if iov is None or not target.flags.writeable:
            return None
        done = 0
        while iov.shape[0]:
            group = iov[:_IOV_MAX]
            got = _preadv(self.fd, group.ctypes.data, group.shape[0], offset + done)
            if got < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    continue
                raise OSError(err, os.strerror(err))
            if got == 0:
                break
            done += got
            # Drop the runs read whole; a run read in part continues where the read stopped.
            ends = np.cumsum(group[:, 1])
            whole = int(np.searchsorted(ends, got, side="right"))
            iov = iov[whole:]
            part = got - (int(ends[whole - 1]) if whole else 0)
            if part:
                iov = iov.copy()
                iov[0, 0] += np.uint64(part)
                iov[0, 1] -= np.uint64(part)
        self.nbytes_read += done
        return done


def _iovecs(target: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]] | None:
    """``struct iovec`` entries (address, length) of the contiguous runs of bytes a C-order fill of
    ``target`` writes, in order. Axes that lie back to back in memory are merged, so a chunk's place in a
    larger array is one run per row, and a contiguous place is one run. None unless ``target``'s last
    axis is contiguous and every stride runs forward."""
    if target.size == 0 or target.strides[-1] != target.itemsize or min(target.strides) < 0:
        return None
    shape = [*target.shape[:-1], target.shape[-1] * target.itemsize]
    strides = [*target.strides[:-1], 1]
    i = len(shape) - 1
    while i > 0:
        if strides[i - 1] == shape[i] * strides[i]:
            shape[i - 1 : i + 1] = [shape[i - 1] * shape[i]]
            strides[i - 1 : i + 1] = [strides[i]]
        i -= 1
    starts: np.ndarray[Any, np.dtype[np.uint64]] = np.full(1, target.ctypes.data, dtype=np.uint64)
    for n, s in zip(shape[:-1], strides[:-1], strict=True):
        steps = np.arange(n, dtype=np.uint64) * np.uint64(s)
        starts = np.add.outer(starts, steps).reshape(-1)
    iov = np.empty((starts.size, 2), dtype=np.uint64)
    iov[:, 0] = starts
    iov[:, 1] = shape[-1]
    return iov
