"""The result of an ingest: one line per file (created, skipped, failed with its reason), and totals."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["FileReport", "IngestProgress", "IngestReport", "PlannedImage"]

Status = Literal["created", "skipped", "failed", "planned"]


@dataclass
class PlannedImage:
    """An image a dry run would create: its scene, shape, dims, dtype and metadata."""

    scene: int
    name: str | None
    shape: list[int]
    dims: list[str]
    dtype: str
    channels: list[str | None]
    pixel_size: dict[str, float]


@dataclass
class FileReport:
    """One source: what became of it."""

    path: str
    status: Status
    #: Ids of the images created from it in this run.
    images: list[str] = field(default_factory=list)
    #: Scenes already on the server, not ingested again.
    skipped: int = 0
    error: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    fingerprint: str | None = None
    #: Id of the ``File`` keeping the source as it is (``keep_original``).
    original_file: str | None = None
    planned: list[PlannedImage] = field(default_factory=list)

    @property
    def created(self) -> int:
        return len(self.images)


@dataclass
class IngestReport:
    """Every file of an ingest, in the order given; ``ok`` when none failed."""

    files: list[FileReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def created(self) -> int:
        """Images created."""
        return sum(f.created for f in self.files)

    @property
    def skipped(self) -> int:
        """Images found already ingested (not created again)."""
        return sum(f.skipped for f in self.files)

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "bytes": self.bytes,
            "seconds": self.seconds,
            "files": [asdict(f) for f in self.files],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str))


@dataclass(frozen=True)
class IngestProgress:
    """Handed to ``on_progress`` whenever a file finishes or a shard is uploaded."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    images_created: int
    current: str | None = None
