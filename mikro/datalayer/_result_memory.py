"""Memory for whole-image results, kept warm after the user drops a result, for the next one.

A fresh result of hundreds of MiB must be page-faulted in, and the kernel zeroes every page first. Where
the pages were freed a moment ago that costs about 0.1 CPU-s per GiB; on a VM whose balloon takes free
pages back (free page reporting: Firecracker and many cloud VMs, this machine among them; it happens
about 2 s after a page is freed) the same faults cost 1 to 2.5 CPU-s per GiB (measured), more than the
whole rest of the read (about 0.75). A script that reads one image after another pays that every time.

So a large result's memory is an anonymous mapping that mikro owns. It is advised to use transparent huge
pages (as numpy advises large arrays) only where that never waits for the kernel to compact memory: where
a fault in an advised mapping compacts memory to find a huge page (THP ``defrag`` = ``madvise``, ``always``
or ``defer+madvise``; this machine says ``madvise``), faulting in 256 MiB so advised cost 0.2 to 1.1 CPU-s
and 1 to 8 s of compaction stalls, small pages 0.12 CPU-s and 0.5 s; a fresh script's plain
``rep.data.values`` of 256 MiB went from 4.4-10 CPU-s per GiB to 1.5 (measured here, issue 17). When the
last array viewing it is
dropped, the mapping is kept for the next result of the same size: writing to pages still there costs no
fault at all. After `FREE_AFTER_SECONDS` unused it is marked ``MADV_FREE`` (the kernel takes the pages back
only under memory pressure, without swapping; until then they stay mapped), by a short-lived thread that
ends when nothing is left to mark. Not at once: writing into pages marked so costs the kernel a walk of
their page tables again (measured here: a read of 256 MiB straight into such pages took 0.48 CPU-s per
GiB and 1.5x the time of one into pages left as they were, 0.38), and a script that reads one image after
another takes the memory back within milliseconds. At most ``MIKRO_KEEP_RESULT_MB`` MiB (default 1024; 0 turns
this off) are kept, each for at most `KEEP_SECONDS` after its release; older ones are unmapped at the
next take or release. While kept, the pages count in the process's RSS (as ``LazyFree``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import mmap
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FREE_AFTER_SECONDS",
    "KEEP_SECONDS",
    "MIN_POOLED_BYTES",
    "fault_in",
    "release_kept_results",
    "result_array",
]

#: Smaller results come from numpy (malloc reuses freed memory of that size on its own).
MIN_POOLED_BYTES = 4 * 2**20
#: A released mapping not taken again within this long is unmapped (at the next take or release).
KEEP_SECONDS = 60.0
#: A released mapping not taken again within this long is marked ``MADV_FREE``.
FREE_AFTER_SECONDS = 1.0
#: Sizes are rounded up to this: results of nearly the same size share kept memory.
_HUGE_PAGE = 2 * 2**20
_DEFAULT_KEEP_MB = 1024
_GIVE_WAIT_SECONDS = 0.5

_MADV_FREE: int | None = getattr(mmap, "MADV_FREE", None)
_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)
_THP_DEFRAG = "/sys/kernel/mm/transparent_hugepage/defrag"
_PRIVATE_ANONYMOUS: int | None = (
    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS")
    else None
)


@functools.cache
def _huge_pages_never_stall() -> bool:
    """Whether a fault in a mapping advised to use huge pages never compacts memory first (THP defrag
    ``defer`` or ``never``: a huge page if one is free, else small pages at once)."""
    try:
        with open(_THP_DEFRAG) as f:
            chosen = f.read().split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        return False
    return chosen in ("defer", "never")


def _keep_limit() -> int:
    raw = os.environ.get("MIKRO_KEEP_RESULT_MB", "").strip()
    try:
        mib = float(raw) if raw else _DEFAULT_KEEP_MB
    except ValueError:
        mib = _DEFAULT_KEEP_MB
    return max(int(mib * 2**20), 0)


class _Mapping:
    """One anonymous private mapping and the address of its first byte."""

    __slots__ = ("address", "freed", "mapping", "released", "size")

    def __init__(self, size: int) -> None:
        assert _PRIVATE_ANONYMOUS is not None
        self.size = size
        self.mapping = mmap.mmap(-1, size, flags=_PRIVATE_ANONYMOUS)
        if _MADV_HUGEPAGE is not None and _huge_pages_never_stall():
            with contextlib.suppress(OSError):  # THP compiled out or disabled: small pages, still right
                self.mapping.madvise(_MADV_HUGEPAGE)
        anchor = ctypes.c_char.from_buffer(self.mapping)
        self.address = ctypes.addressof(anchor)
        del anchor  # its buffer export would keep the mapping from being closed
        self.released = 0.0
        self.freed = False  # marked MADV_FREE since its last release

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError, OSError):
            self.mapping.close()


class _Lease:
    """The owner numpy records as ``base`` of a result array; dropping the last view returns the memory.

    numpy keeps the object that provided ``__array_interface__`` alive as long as any view of the array.
    """

    __slots__ = ("_interface", "_kept", "_memory")

    def __init__(self, kept: _Kept, memory: _Mapping, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self._kept = kept
        self._memory = memory
        self._interface: dict[str, Any] = {
            "data": (memory.address, False),
            "shape": shape,
            "typestr": dtype.str,
            "version": 3,
        }

    @property
    def __array_interface__(self) -> dict[str, Any]:
        return self._interface

    def __del__(self) -> None:
        # No module globals (contextlib): this also runs while the interpreter exits.
        try:  # noqa: SIM105
            self._kept.give(self._memory)
        except Exception:
            pass


class _Kept:
    """Released mappings, oldest first, bounded in bytes and age. Thread-safe."""

    def __init__(self) -> None:
        self._entries: list[_Mapping] = []
        self._reset_locks()

    def _reset_locks(self) -> None:
        # Also in a forked child: the parent's lock may have been held, and its thread is not there.
        self._lock = threading.Lock()
        self._held = threading.local()  # this thread holds the lock: a release inside must not wait for it
        self._due = threading.Condition(self._lock)  # the entries were cleared
        self._freeing = False  # a thread marks released mappings MADV_FREE when they are due

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        self._held.on = True
        try:
            yield
        finally:
            self._held.on = False

    def take(self, size: int) -> _Mapping | None:
        with self._lock, self._holding():
            self._expire_locked(time.monotonic(), _keep_limit())
            for i in range(len(self._entries) - 1, -1, -1):
                if self._entries[i].size == size:
                    return self._entries.pop(i)
        return None

    def give(self, memory: _Mapping) -> None:
        limit = _keep_limit()
        # Runs wherever the last view is dropped, maybe while this very thread holds the lock (a garbage
        # collection inside `take`): then just unmap. Another thread holds it only for a moment (the
        # marker thread between its waits), so wait for that, bounded (at exit its holder may be frozen).
        # While the interpreter exits (a result kept in a module global), a new thread never runs: on
        # Python 3.11 starting the marker then waited for it forever, so the process never ended.
        if (
            memory.size > limit
            or _MADV_FREE is None
            or sys.is_finalizing()
            or getattr(self._held, "on", False)
            or not self._lock.acquire(timeout=_GIVE_WAIT_SECONDS)
        ):
            memory.close()
            return
        self._held.on = True
        try:
            memory.released = time.monotonic()
            memory.freed = False
            self._entries.append(memory)
            self._expire_locked(memory.released, limit)
            # A running marker thread needs no wake-up: it already waits for an earlier deadline.
            if not self._freeing:
                marker = threading.Thread(target=self._free_when_due, name="mikro-result-memory", daemon=True)
                try:
                    marker.start()
                    self._freeing = True
                except RuntimeError:  # no new threads (the interpreter is exiting): mark it now
                    memory.mapping.madvise(_MADV_FREE)
                    memory.freed = True
        finally:
            self._held.on = False
            self._lock.release()

    def _free_when_due(self) -> None:
        """Mark each released mapping MADV_FREE once it was kept `FREE_AFTER_SECONDS`; end when none is
        left to mark."""
        with self._lock, self._holding():
            try:
                while True:
                    waiting = [m for m in self._entries if not m.freed]
                    if not waiting:
                        return
                    now = time.monotonic()
                    for memory in waiting:
                        if now - memory.released >= FREE_AFTER_SECONDS:
                            try:
                                memory.mapping.madvise(_MADV_FREE)  # type: ignore[arg-type]
                                memory.freed = True
                            except (OSError, ValueError):  # unmapped meanwhile, or refused: unmap it
                                self._entries.remove(memory)
                                memory.close()
                    pending = [m.released for m in self._entries if not m.freed]
                    if pending:
                        self._due.wait(max(min(pending) + FREE_AFTER_SECONDS - now, 0.0))
            finally:
                self._freeing = False

    def clear(self) -> None:
        with self._lock, self._holding():
            entries, self._entries = self._entries, []
            self._due.notify()
        for memory in entries:
            memory.close()

    def _expire_locked(self, now: float, limit: int) -> None:
        kept = sum(m.size for m in self._entries)
        while self._entries and (kept > limit or now - self._entries[0].released > KEEP_SECONDS):
            oldest = self._entries.pop(0)
            kept -= oldest.size
            oldest.close()


_kept = _Kept()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_kept._reset_locks)


def release_kept_results() -> None:
    """Unmap every kept result's memory now (a session does this when it closes)."""
    _kept.clear()


def result_array(shape: Sequence[int], dtype: npt.DTypeLike) -> tuple[np.ndarray[Any, Any], bool]:
    """An uninitialised C-contiguous array, like ``np.empty``, and whether its memory is new.

    Memory that is not new was a dropped result's: its pages are (most likely) still mapped, so writing
    costs no page faults; new memory faults in on first write.
    """
    dt = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dt.itemsize
    size = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE
    if (
        nbytes < MIN_POOLED_BYTES
        or size > _keep_limit()
        or _PRIVATE_ANONYMOUS is None
        or _MADV_FREE is None
        or dt.fields is not None
        or dt.hasobject
    ):
        return np.empty(shape, dtype=dt), True
    memory = _kept.take(size)
    new = memory is None
    if memory is None:
        memory = _Mapping(size)
    return np.asarray(_Lease(_kept, memory, shape, dt)), new


def fault_in(view: np.ndarray[Any, Any]) -> None:
    """Back the memory under ``view`` (new memory only this thread fills) with pages before it is filled,
    with the GIL released: ``memset`` through ctypes.

    Otherwise each page faults in at its first write, inside a numpy copy, which may hold the GIL (numpy
    releases it for flat copies, not for the 2-D ones a chunk's rows need): a few slow faults in a row
    stalled the event loop 20 to 30 ms (measured here). The kernel's ``MADV_POPULATE_WRITE`` does the same
    without writing and at about half the CPU, but it holds the address space's lock meanwhile, and the
    event loop's own allocations wait for it: with it, even in 8 MiB calls from a helper thread, the loop
    lag bar (a 5 ms heartbeat during a full read) went from 11-21 to 24-35 ms (stop 11, measured old and
    new alternating). Only contiguous views: the bytes between the rows of another block may already hold
    another thread's data.
    """
    if view.size and view.flags.c_contiguous:
        ctypes.memset(view.ctypes.data, 0, view.nbytes)
