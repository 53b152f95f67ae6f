"""What a small image's thumbnail costs, and who pays (issue 16's small-TIFF bar).

    python benchmarks/thumbnails.py [--quick] [--images 2000] [--reads 200] [--runs 2]

A small image's client registers only its thumbnail's size; the server makes the PNG when it is first
read. Two tables:

- client: CPU per image of ``write_small_image`` (a 256x256 uint16 camera-like plane to a folder store)
  asked for a thumbnail, beside the same write without one (the floor) and the CPU of making the PNG
  in the client as it did before (`thumbnail_of_image`: projection + PNG). Contenders alternate
  (A, B, C, A, B, C ...); medians of ``--runs``.
- server: CPU of `mikro serve` (its own process) per thumbnail for the first read of each image's
  ``png`` (made there from the stored pixels, then kept) and for a second read (one object read), each
  a request of its own as a screening UI's gallery would send them, eight at a time; beside it, this
  process's CPU of `thumbnail_of_image` alone (the making without the request, the reads and the write).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))

from _context import folder_store, synthetic_planes
from _infra import start_mikro_server

import mikro
from mikro.datalayer import GrantedStore, prepare_image, small_layout, write_small_image
from mikro.datalayer._thumbnail import thumbnail_of_image

SIDE = 256


def _folder_store(root: Path) -> GrantedStore:
    store: GrantedStore = folder_store(root / uuid.uuid4().hex[:12])
    return store


def client_table(planes: np.ndarray[Any, Any], runs: int, root: Path) -> None:
    images = [prepare_image(p, dims="yx") for p in planes]
    layout = small_layout(images[0])
    assert layout is not None

    def writes(thumbnail: bool) -> None:
        stores = [_folder_store(root) for _ in images]
        for store, image in zip(stores, images, strict=True):
            write_small_image(store, image, layout, thumbnail=thumbnail)

    def made() -> None:
        for plane in planes:
            thumbnail_of_image(plane)

    contenders: dict[str, Callable[[], None]] = {
        "write_small_image, thumbnail=True (size only)": lambda: writes(True),
        "write_small_image, thumbnail=False (floor)": lambda: writes(False),
        "thumbnail_of_image (what the client made before)": made,
    }
    cpu: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(runs):
        for label, run in contenders.items():
            c0 = time.process_time()
            run()
            cpu[label].append(time.process_time() - c0)
    n = len(planes)
    floor = statistics.median(cpu["write_small_image, thumbnail=False (floor)"])
    print(f"\nclient, {n} images of {SIDE}x{SIDE} uint16, CPU per image (median of {runs})")
    print(f"{'':52} {'ms/img':>8} {'vs floor':>9}")
    for label, seconds in cpu.items():
        median = statistics.median(seconds)
        print(f"{label:52} {median / n * 1e3:8.3f} {median / floor:8.2f}x")


async def _server_reads(url: str, token: str, planes: np.ndarray[Any, Any]) -> list[Any]:
    async with mikro.connect(url, token=token, timeout=60) as m:
        reps = await m.create_representations(
            [{"data": plane, "name": f"field-{i}"} for i, plane in enumerate(planes)]
        )
        return [rep.thumbnails[0] for rep in reps]


async def _read_all(url: str, token: str, thumbs: list[Any]) -> None:
    async with mikro.connect(url, token=token, timeout=60) as m:
        limit = anyio.Semaphore(8)

        async def read(thumb: Any) -> None:
            async with limit:
                await m.thumbnail_png(thumb)

        async with anyio.create_task_group() as tg:
            for thumb in thumbs:
                tg.start_soon(read, thumb)


def server_table(planes: np.ndarray[Any, Any], workdir: Path) -> None:
    with start_mikro_server(workdir) as server:
        thumbs = anyio.run(_server_reads, server.url, server.token, planes)
        figures = []
        for label in ("first read (made from the pixels, then kept)", "second read (one object read)"):
            c0, w0 = server.cpu_seconds(), time.perf_counter()
            anyio.run(_read_all, server.url, server.token, thumbs)
            figures.append((label, server.cpu_seconds() - c0, time.perf_counter() - w0))
    c0 = time.process_time()
    for plane in planes:
        thumbnail_of_image(plane)
    alone = time.process_time() - c0
    n = len(planes)
    print(f"\nserver (`mikro serve`, folder store), {n} thumbnails of {SIDE}x{SIDE} uint16, one request each")
    print(f"{'':52} {'CPU ms/thumb':>12} {'wall ms/thumb':>13}")
    for label, cpu, wall in figures:
        print(f"{label:52} {cpu / n * 1e3:12.3f} {wall / n * 1e3:13.3f}")
    print(f"{'thumbnail_of_image alone (this process)':52} {alone / n * 1e3:12.3f}")
    made = (figures[0][1] - figures[1][1]) / n * 1e3
    print(f"  first read - second read: {made:.3f} ms of server CPU per thumbnail made")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="200 writes, 50 reads")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    images, reads = (200, 50) if args.quick else (args.images, args.reads)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    planes = synthetic_planes(16, SIDE)
    with tempfile.TemporaryDirectory(prefix="mikro-thumbs-") as tmp:
        workdir = Path(tmp)
        client_table(planes[np.arange(images) % len(planes)], args.runs, workdir / "client")
        server_table(synthetic_planes(reads, SIDE, seed=1), workdir)


if __name__ == "__main__":
    main()
