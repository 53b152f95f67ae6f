"""A file written beside its target and renamed over it once complete: no reader ever sees half of it,
and a failure or cancellation leaves nothing (folder stores' objects, kernel copies, downloads)."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["make_folder", "staged", "write_all", "write_parts"]

#: Staging files get the writing process's id and a count: unique without uuid4's urandom call.
_staging_numbers = itertools.count()
#: os.open's descriptors are not inherited anyway (PEP 446); O_BINARY matters on Windows only.
_STAGING_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def make_folder(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` without its ``stat`` of every parent first: a fresh store's
    folders are made by as many ``mkdir`` calls as are missing, plus one."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        make_folder(parent)
        with contextlib.suppress(FileExistsError):  # made meanwhile by another thread
            os.mkdir(path)


#: The most bytes one ``write`` call is given. The kernel backs a write's new page cache with folios as
#: large as the call allows (2 MiB for a 32 MiB shard on ext4); on a VM whose balloon takes free memory
#: back (Firecracker, many cloud VMs, this machine), large free blocks are the ones the host took, so
#: each such folio is backed again on first touch. Measured here, 8 x 32 MiB written to new files:
#: 6.0 CPU-s per GiB in 2 MiB calls, 2.4 in 1 MiB calls, 0.3 in 512, 256 or 64 KiB calls.
WRITE_PIECE_BYTES = 256 * 2**10


def write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view[:WRITE_PIECE_BYTES]) :]


def write_parts(fd: int, parts: Sequence[Buffer]) -> None:
    """Write ``parts`` one after the other: in one ``writev`` when together they fit a write piece
    (a small image's shard: its encoded chunk and its index, not joined into a new buffer first)."""
    views = [memoryview(part).cast("B") for part in parts]
    total = sum(view.nbytes for view in views)
    done = _writev(fd, views) if _writev is not None and total <= WRITE_PIECE_BYTES else 0
    for view in views:
        if done >= view.nbytes:
            done -= view.nbytes
            continue
        write_all(fd, view[done:])
        done = 0


#: Not on Windows: there the parts go one ``write`` each.
_writev = getattr(os, "writev", None)


@contextlib.contextmanager
def staged(target: str, *, make_folders: bool = False) -> Iterator[tuple[int, str]]:
    """A descriptor and the path of a new file beside ``target`` (same file system: the rename is
    atomic), renamed over ``target`` when the block ends, removed when it raises (blocking).

    Made exclusively (never someone else's file), with the umask's permissions (unlike mkstemp's 0600),
    a bare descriptor (open()'s file objects add an fstat, a tty check and seeks), and like obstore's
    `LocalStore` without fsync. ``make_folders``: the target's missing folders are made, only when the
    staging file cannot be created without them.
    """
    folder, name = os.path.split(target)
    staging = os.path.join(folder, f".{name}.{os.getpid()}.{next(_staging_numbers)}.part")
    try:
        fd = os.open(staging, _STAGING_FLAGS, 0o666)
    except FileNotFoundError:
        if not make_folders:
            raise
        make_folder(folder)
        fd = os.open(staging, _STAGING_FLAGS, 0o666)
    try:
        try:
            yield fd, staging
        finally:
            os.close(fd)
        os.replace(staging, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise
