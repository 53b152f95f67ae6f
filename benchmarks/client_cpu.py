"""Client CPU per image on the ingest path, stage by stage, and end to end against moto (issue 7).

The ingest bar is "client CPU <= 2.0 s/GiB" for 64 images of 2048x2048 uint16 without compression. This
script splits that cost into the client's own stages (process CPU time, not wall time: the machine is
shared) and, with ``--ingest``, measures the whole ``create_representation`` path against moto's S3
server and ``mikro serve`` (each in its own process, so only the client's CPU is counted).

    python benchmarks/client_cpu.py [--images 64] [--runs 3] [--ingest] [--compression blosc-lz4]

Stages run on 8 worker threads, as in an ingest of 8 images in flight. "fresh" buffers clears the
shard buffer pool before every shard: the difference to the pooled line is what the kernel spends
zeroing new pages (it depends on how the allocator reuses freed memory, so the ingest line can differ).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks._context import synthetic_planes
from mikro.datalayer._layout import choose_layout
from mikro.datalayer._shard import SHARD_BUFFERS, ChunkCodec, encode_shard
from mikro.datalayer._thumbnail import encode_png, make_thumbnail

SIDE = 2048
THREADS = 8


def cpu_of(run: Callable[[], Any]) -> tuple[float, float, float, float]:
    """Process CPU, user and system seconds, and minor page faults, spent in ``run()``."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = time.process_time()
    run()
    cpu = time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return cpu, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt


def stages(planes: np.ndarray[Any, Any], runs: int) -> list[tuple[str, list[tuple[float, ...]]]]:
    n = len(planes)
    raw = choose_layout(planes.shape[1:], planes.dtype, ("y", "x"), compression=None)
    blosc = choose_layout(planes.shape[1:], planes.dtype, ("y", "x"), compression="blosc-lz4")
    step = SIDE // 512
    projections = [np.ascontiguousarray(p[::step, ::step]) for p in planes]
    pixels8 = [(p[::2, ::2] >> 4).astype(np.uint8) for p in projections]

    def shards(layout: Any, fresh: bool) -> Callable[[int], memoryview]:
        codec = ChunkCodec.for_layout(layout)

        def one(i: int) -> memoryview:
            if fresh:
                SHARD_BUFFERS.clear()
            return encode_shard(planes[i], layout, codec)  # dropped at once, as after its put

        return one

    def each(fn: Callable[[int], Any]) -> Callable[[], None]:
        def drop(i: int) -> None:
            fn(i)  # the result is dropped in the worker, as a shard is after its put

        def run() -> None:
            with cf.ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(drop, range(n)))

        return run

    cases: list[tuple[str, Callable[[], None]]] = [
        ("encode_shard raw, pooled buffers", each(shards(raw, fresh=False))),
        ("encode_shard raw, fresh buffers", each(shards(raw, fresh=True))),
        ("encode_shard blosc-lz4", each(shards(blosc, fresh=False))),
        ("make_thumbnail (512x512 projection)", each(lambda i: make_thumbnail(projections[i]))),
        ("  encode_png (256x256)", each(lambda i: encode_png(pixels8[i]))),
    ]
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name, _ in cases}
    for _name, run in cases:
        run()  # warm: pools, thread start-up, imports
    for _ in range(runs):
        for name, run in cases:  # interleaved, so a busy moment hits every case alike
            results[name].append(cpu_of(run))
    SHARD_BUFFERS.clear()
    return list(results.items())


def ingest(planes: np.ndarray[Any, Any], runs: int, compression: str | None) -> list[tuple[float, ...]]:
    import anyio

    import mikro
    from benchmarks._infra import start_mikro_server, start_moto

    rows: list[tuple[float, ...]] = []
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="mikro-client-cpu-"))
        moto = stack.enter_context(start_moto(work))
        server = stack.enter_context(start_mikro_server(work, s3=moto, bucket="client-cpu-bucket"))

        async def main() -> None:
            async with mikro.connect(server.url, token=server.token) as m:
                limiter = anyio.CapacityLimiter(THREADS)

                async def one(name: str, plane: np.ndarray[Any, Any]) -> None:
                    async with limiter:
                        await m.create_representation(
                            plane,
                            name=name,
                            dims=("y", "x"),
                            compression=compression,  # type: ignore[arg-type]
                        )

                await one("warm", planes[0])
                for r in range(runs):
                    r0 = resource.getrusage(resource.RUSAGE_SELF)
                    c0 = time.process_time()
                    async with anyio.create_task_group() as tg:
                        for i, plane in enumerate(planes):
                            tg.start_soon(one, f"run{r}-{i}", plane)
                    cpu = time.process_time() - c0
                    r1 = resource.getrusage(resource.RUSAGE_SELF)
                    rows.append(
                        (
                            cpu,
                            r1.ru_utime - r0.ru_utime,
                            r1.ru_stime - r0.ru_stime,
                            r1.ru_minflt - r0.ru_minflt,
                        )
                    )

        anyio.run(main)
    return rows


def print_row(name: str, rows: list[tuple[float, ...]], images: int, plane_bytes: int) -> None:
    cpu, user, system, faults = (statistics.median(col) for col in zip(*rows, strict=True))
    per = 1000 / images
    gib = images * plane_bytes / 2**30
    print(
        f"{name:38s} {cpu * per:8.2f} {cpu / gib:7.3f} {user * per:7.2f} {system * per:7.2f} "
        f"{faults / images:7.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ingest", action="store_true", help="also the whole path against moto + mikro serve"
    )
    parser.add_argument("--compression", default=None, help="codec for --ingest (default: none)")
    args = parser.parse_args()
    planes = synthetic_planes(args.images, SIDE)
    plane_bytes = planes[0].nbytes
    print(
        f"{args.images} images of {SIDE}x{SIDE} uint16, {THREADS} threads, median of {args.runs} runs; "
        "CPU = process user+system time"
    )
    print(f"{'stage':38s} {'ms/img':>8s} {'s/GiB':>7s} {'user':>7s} {'sys':>7s} {'flt/img':>7s}")
    for name, rows in stages(planes, args.runs):
        print_row(name, rows, args.images, plane_bytes)
    if args.ingest:
        label = f"ingest to moto ({args.compression or 'raw'})"
        print_row(label, ingest(planes, args.runs, args.compression), args.images, plane_bytes)


if __name__ == "__main__":
    main()
