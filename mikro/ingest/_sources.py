"""What to ingest: files, folders (recursive) and globs expanded to source paths, and each source's
fingerprint (content hash) with the stat signature that tells whether it changed meanwhile."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Fingerprint", "expand_paths", "fingerprint", "signature"]

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
    """A source's content hash (sha256 hex), its size in bytes and its stat signature."""

    digest: str
    size: int
    signature: tuple[int, int, int]


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def signature(path: Path) -> tuple[int, int, int]:
    """(files, bytes, newest mtime in ns) of a file or an image folder: changes when its content does."""
    files = _files_of(path)
    stats = [f.stat() for f in files]
    return len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def fingerprint(path: Path) -> Fingerprint:
    """Hash a source's content (blocking: call it in a worker thread). A folder hashes its files'
    relative paths and contents, in order."""
    before = signature(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for f in _files_of(path):
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
            digest.update(_file_digest(f))
    else:
        digest = _hasher(path)
    return Fingerprint(digest.hexdigest(), before[1], before)


def _hasher(path: Path) -> hashlib._Hash:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256")


def _file_digest(path: Path) -> bytes:
    return _hasher(path).digest()
