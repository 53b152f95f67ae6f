"""What to ingest: files, folders (recursive) and globs expanded to source paths, and each source's
fingerprint (content hash) with the stat signature that tells whether it changed meanwhile.

A fingerprint is spelled ``blake3:<hex>``, the same as the content hash of the source's original
(`File`). mikro before BLAKE3 recorded the bare SHA-256 hex of the source (``legacy``): an ingest for a
user whose images carry such fingerprints (the server says so, asked once per run) computes both in
the same read and looks both up, so that an upgrade never ingests a file twice; other users pay nothing.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mikro.datalayer._hashing import CONTENT_HASH_ALGORITHM, hash_file, new_hasher, spelled

__all__ = ["LEGACY_ALGORITHM", "Fingerprint", "expand_paths", "fingerprint", "signature"]

#: What fingerprints were before ``blake3:``: the bare hex digest of this algorithm.
LEGACY_ALGORITHM = "sha256"
#: Folders that are one image (OME-Zarr written by other tools), not folders of files.
IMAGE_FOLDER_SUFFIXES = (".zarr",)


def _is_image_folder(path: Path) -> bool:
    return path.is_dir() and (
        path.name.lower().endswith(IMAGE_FOLDER_SUFFIXES) or (path / "zarr.json").is_file()
    )


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs.sort()
        # An OME-Zarr inside the folder is one source: do not descend into its chunks.
        for d in [d for d in dirs if _is_image_folder(here / d)]:
            dirs.remove(d)
            yield here / d
        for name in sorted(files):
            if not name.startswith("."):
                yield here / name


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """The sources ``paths`` name (files, folders walked recursively, globs), each once, in order,
    and the paths that matched nothing."""
    found: dict[Path, None] = {}
    missing: list[str] = []
    for raw in paths:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.exists():
            matches = [path]
        elif glob.has_magic(text):
            matches = [Path(p) for p in sorted(glob.glob(os.path.expanduser(text), recursive=True))]
        else:
            matches = []
        if not matches:
            missing.append(text)
        for match in matches:
            if match.is_dir() and not _is_image_folder(match):
                found.update(dict.fromkeys(_walk(match)))
            else:
                found[match.absolute()] = None
    return [p.absolute() for p in found], missing


@dataclass(frozen=True)
class Fingerprint:
    """A source's fingerprint (``blake3:<hex>``), its size in bytes and its stat signature; with
    ``legacy``, also the bare SHA-256 hex that mikro recorded before."""

    digest: str
    size: int
    signature: tuple[int, int, int]
    legacy: str | None = None

    @property
    def spellings(self) -> list[str]:
        """Every fingerprint this source's images may be recorded with."""
        return [self.digest] if self.legacy is None else [self.digest, self.legacy]

    @property
    def original_hashes(self) -> list[str]:
        """Every content hash its original (a `File`) may be stored with."""
        if self.legacy is None:
            return [self.digest]
        return [self.digest, f"{LEGACY_ALGORITHM}:{self.legacy}"]


def _files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def signature(path: Path) -> tuple[int, int, int]:
    """(files, bytes, newest mtime in ns) of a file or an image folder: changes when its content does."""
    return _signature(path)[0]


def _signature(path: Path) -> tuple[tuple[int, int, int], bool]:
    """`signature` and whether ``path`` is a folder, from one ``stat`` for a file (an ingest asks for
    each small file's signature three times: stat calls were ~3 % of the client's CPU per file)."""
    found = os.stat(path)
    if not stat.S_ISDIR(found.st_mode):
        return (1, found.st_size, found.st_mtime_ns), False
    stats = [f.stat() for f in _files_of(path)]
    newest = max((s.st_mtime_ns for s in stats), default=0)
    return (len(stats), sum(s.st_size for s in stats), newest), True


def fingerprint(path: Path, *, legacy: bool = False) -> Fingerprint:
    """Hash a source's content (blocking: call it in a worker thread), read once; with ``legacy``, its
    SHA-256 as well. A folder hashes its files' relative paths and contents, in order."""
    algorithms = [CONTENT_HASH_ALGORITHM, LEGACY_ALGORITHM] if legacy else [CONTENT_HASH_ALGORITHM]
    before, folder = _signature(path)
    if folder:
        hashers = [new_hasher(a) for a in algorithms]
        for f in _files_of(path):
            name = f.relative_to(path).as_posix().encode() + b"\0"
            for outer, inner in zip(hashers, hash_file(f, algorithms), strict=True):
                outer.update(name)
                outer.update(inner.digest())
    else:
        hashers = hash_file(path, algorithms)
    old = hashers[1].hexdigest() if legacy else None
    return Fingerprint(spelled(CONTENT_HASH_ALGORITHM, hashers[0]), before[1], before, old)
