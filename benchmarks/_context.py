"""What the bars share during one run: sizes, the moto server, lazily started mikro servers, the data."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from _infra import MikroServer, MotoS3, start_mikro_server, start_moto

__all__ = ["Context", "Sizes", "synthetic_planes"]

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    ingest_images: int  # images of ingest_side² uint16, one 2-D image each
    ingest_side: int
    read_planes: int  # the read image: read_planes x read_side² uint16
    read_side: int
    zplane_planes: int  # the z-plane image: zplane_planes x zplane_side² uint16
    zplane_side: int
    api_calls: int
    api_concurrency: int
    sync_calls: int
    ingest_concurrency: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(64, 2048, 32, 2048, 64, 1024, 1000, 32, 1000, 8)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(8, 512, 4, 512, 64, 512, 100, 32, 100, 8)

    @property
    def ingest_bytes(self) -> int:
        return self.ingest_images * self.ingest_side**2 * 2

    @property
    def read_bytes(self) -> int:
        return self.read_planes * self.read_side**2 * 2


def synthetic_planes(n: int, side: int, seed: int = 0) -> np.ndarray:
    """uint16 planes that compress like a camera image: a smooth field plus 6 bits of noise."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(0.0, 6 * math.pi, side)
    base = (1000 + 400 * np.sin(axis)[:, None] * np.cos(axis)[None, :]).astype(np.uint16)
    out = np.empty((n, side, side), dtype=np.uint16)
    for i in range(n):
        out[i] = np.roll(base, 7 * i, axis=1)
        out[i] += rng.integers(0, 64, size=(side, side), dtype=np.uint16)
    return out


def folder_store(path: Path) -> Any:
    """A writable `GrantedStore` of the folder ``path`` (a folder grant valid for two hours), for the
    benchmarks that call the datalayer's writers without a server. mikro is imported here, not at the
    top: the processes that only run floors never import it."""
    import datetime as dt

    from mikro.datalayer import GrantedStore, StorageGrant

    grant = StorageGrant(
        store_id=path.name,
        kind="file",
        bucket="",
        prefix=path.name,
        path=str(path),
        write=True,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    return GrantedStore(lambda: grant, grant=grant)


class Context:
    def __init__(
        self,
        *,
        sizes: Sizes,
        runs: int,
        workdir: Path,
        stack: contextlib.ExitStack,
        log: Callable[[str], None],
    ) -> None:
        self.sizes = sizes
        self.runs = runs
        self._moto: MotoS3 | None = None
        self.workdir = workdir
        self.log = log
        self._stack = stack
        self._servers: dict[str, MikroServer] = {}
        self._data: dict[str, np.ndarray] = {}
        self.cache: dict[str, object] = {}
        self._buckets: set[str] = set()

    @property
    def moto(self) -> MotoS3:
        """moto's S3 server, started on first use (the local-folder bars do not need it)."""
        if self._moto is None:
            self.log("  starting moto S3 server")
            self._moto = self._stack.enter_context(start_moto(self.workdir))
        return self._moto

    def bucket(self, name: str) -> str:
        if name not in self._buckets:
            self.moto.create_bucket(name)
            self._buckets.add(name)
        return name

    def server(self, kind: str, *, s3_endpoint: str | None = None) -> MikroServer:
        """A `mikro serve` subprocess per kind ("s3", "local", or any name with its own bucket)."""
        if kind not in self._servers:
            self.log(f"  starting mikro serve ({kind})")
            if kind == "local":
                cm = start_mikro_server(self.workdir, name=f"mikro-{kind}")
            else:
                bucket = f"mikro-{kind}"
                self._buckets.add(bucket)
                cm = start_mikro_server(
                    self.workdir, s3=self.moto, bucket=bucket, s3_endpoint=s3_endpoint, name=f"mikro-{kind}"
                )
            self._servers[kind] = self._stack.enter_context(cm)
        return self._servers[kind]

    def enter(self, cm: contextlib.AbstractContextManager[T]) -> T:
        """Keep `cm` open until the end of the run (closed in reverse order, servers before moto)."""
        return self._stack.enter_context(cm)

    def planes(self, key: str, n: int, side: int) -> np.ndarray:
        if key not in self._data:
            self._data[key] = synthetic_planes(n, side, seed=len(self._data))
        return self._data[key]
