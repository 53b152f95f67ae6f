"""Ingest of microscope files (issue 16): three bars, each beside its floor measured in the same run.

    python benchmarks/ingest_files.py [--quick] [--runs 3] [--json out.json]

- big:   N OME-TIFF files of 2048x2048x4ch uint16 (200 full, 8 quick) through `m.ingest`, to a folder
         store and to S3 (moto). The bar (like for like): `m.ingest(compression=None, pyramid=None,
         keep_original=False)` against its floor, tifffile read + raw obstore put of the same bytes.
         Also printed, each beside the floor doing the same work: the default settings (blosc-lz4 and
         a pyramid) against tifffile read + the default codec + the pyramid's 2x2 means levels + raw
         put; and with originals kept (the default) against the raw floor putting the file's own
         bytes as well.
         Target ≥ 0.8x the floor (MiB/s); client and server CPU s/GiB printed.
- small: 2,000 TIFFs of 256x256 (200 quick); floor: tifffile read + raw put of each image's objects
         (pixels and the two small zarr.json). Target ≥ 0.5x the floor doing the same work (images/s):
         the default (originals kept) against the floor that also puts each file's own bytes, the ingest
         without originals against the floor without. Client and server CPU per image printed.
- rerun: the small folder again, everything already stored: hashing and one request per 2,000 files.
         Target ≥ 2,000 files/s.

`--bars small,rerun` runs only those bars. Every run of mikro ingests into a fresh user's account, so
fingerprints from an earlier run never turn an ingest into a rerun; the images are deleted after each
timed run. Every contender's run starts after the same settle (`_ingest.SETTLE_SECONDS` after the
previous one's cleanup: this VM hands freed memory back, and who writes first after a cleanup writes
several times faster) and an `os.sync()` (no dirty page of the contender before, its files and its
cleanup, is left for this one's writes to wait behind), and one small file is ingested untimed
beforehand in the same process (the imports of a first ingest, done once per process, like the floor's
imports before it is timed). Beside the floor, the "hash floor": the fingerprints of the same files
alone, what resumability costs at the least.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _baselines as bl
import anyio
import numpy as np
import obstore
import tifffile
from _context import Context, Sizes, synthetic_planes
from _harness import MIB, BarResult, Check, Figure, Sample, figure_from, file_creation_cost, interleave, timed
from _infra import MikroServer
from _ingest import settled
from _report import print_table, write_json
from numcodecs import Blosc
from rich.console import Console

from mikro._config import cores
from mikro.datalayer._layout import DEFAULT_COMPRESSION, blosc_configuration

CONCURRENCY = 8

# The big bar's contenders.
LIKE = "mikro ingest, uncompressed, no pyramid, no originals"
DEFAULTS = "mikro ingest, default codec and pyramid, no originals"
KEPT = "mikro ingest, defaults, originals kept (all defaults)"
RAW = "tifffile read + raw put"
ENCODED = "tifffile read + default codec + pyramid + raw put"
RAW_KEPT = "tifffile read + raw put + put original"
HASHED = "fingerprints alone (the hash floor)"


@dataclass(frozen=True)
class FileSizes:
    big_files: int
    big_side: int
    channels: int
    small_files: int
    small_side: int

    @classmethod
    def full(cls) -> FileSizes:
        return cls(200, 2048, 4, 2000, 256)

    @classmethod
    def quick(cls) -> FileSizes:
        # Files of the full bar's size (the per-file costs weigh as they do there), fewer of them.
        return cls(8, 2048, 4, 200, 256)


def write_files(folder: Path, count: int, side: int, channels: int, *, ome: bool) -> int:
    """`count` TIFFs (OME-TIFF with channel names and pixel sizes when `ome`); returns their pixel bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    planes = synthetic_planes(channels, side)
    for i in range(count):
        data = np.roll(planes, i, axis=-1)
        data[..., 0, :2] = divmod(i, 2**16)  # every file's content unique: one source each
        if ome:
            meta = {
                "axes": "CYX",
                "Channel": {"Name": [f"ch{c}" for c in range(channels)]},
                "PhysicalSizeX": 0.1,
            }
            tifffile.imwrite(folder / f"f{i:05d}.ome.tif", data, ome=True, metadata=meta)
        else:
            tifffile.imwrite(folder / f"f{i:05d}.tif", data[0], photometric="minisblack")
    return count * planes[: channels if ome else 1].nbytes


def _user(server: MikroServer) -> str:
    """A fresh user (its token) on a benchmark server, made with the server's own CLI."""
    import subprocess

    name = f"bench{time.monotonic_ns()}"
    env = {**os.environ, "MIKRO_ADMIN_TOKEN": server.token}
    done = subprocess.run(
        [sys.executable, "-m", "mikro", "user", "add", name, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def mikro_ingest(
    server: MikroServer, folder: Path, nbytes: int, *, rerun: bool = False, **options: Any
) -> Sample:
    """`m.ingest(folder)` timed; with `rerun`, a first untimed ingest stores everything beforehand."""
    import mikro

    token = _user(server)

    async def main() -> tuple[Any, Any]:
        async with mikro.connect(server.url, token=token, timeout=120) as m:
            if rerun:
                await m.ingest(folder, concurrency=CONCURRENCY)
            server0 = server.cpu_seconds()
            with timed() as clock:
                report = await m.ingest(folder, concurrency=CONCURRENCY, **options)
            server_cpu = server.cpu_seconds() - server0
            assert report.ok, [f.error for f in report.failed][:3]
            ids = [i for f in report.files for i in f.images]
            originals = [f.original_file for f in report.files if f.original_file]
            async with anyio.create_task_group() as tg:
                for rep_id in ids:
                    tg.start_soon(m.delete_representation, rep_id)
                for file_id in originals:
                    tg.start_soon(m.delete_file, file_id)
            return clock, (report, server_cpu)

    clock, (report, server_cpu) = anyio.run(main)
    files = len(report.files)
    return Sample(
        clock.seconds,
        clock.cpu,
        nbytes,
        value=files / clock.seconds,
        extra={"server_cpu_s": server_cpu, "images": report.created, "skipped": report.skipped},
    )


def mikro_arrays(server: MikroServer, folder: Path, nbytes: int) -> Sample:
    """The same pixels through `create_representation` from numpy (files read beforehand, untimed): what
    the ingest costs beyond mikro's per-image upload."""
    import mikro

    arrays = [tifffile.imread(p) for p in sorted(folder.iterdir())]
    token = _user(server)

    async def main() -> Any:
        async with mikro.connect(server.url, token=token, timeout=120) as m:
            slots = anyio.Semaphore(CONCURRENCY)
            reps: list[Any] = []

            async def one(i: int) -> None:
                async with slots:
                    dims = "yx" if arrays[i].ndim == 2 else "cyx"
                    reps.append(await m.create_representation(arrays[i], name=f"a{i}", dims=dims))

            with timed() as clock:
                async with anyio.create_task_group() as tg:
                    for i in range(len(arrays)):
                        tg.start_soon(one, i)
            async with anyio.create_task_group() as tg:
                for rep in reps:
                    tg.start_soon(m.delete_representation, rep.id)
            return clock

    clock = anyio.run(main)
    return Sample(clock.seconds, clock.cpu, nbytes, value=len(arrays) / clock.seconds)


def _same_encoding(data: np.ndarray[Any, Any]) -> list[bytes]:
    """The bytes mikro's default layout costs at the least: each plane in chunks of at most 4 MiB through
    the default codec (blosc-lz4, byte shuffle, the same configuration), plus the pyramid's levels (2x2
    means until a level fits 1024 px) compressed the same way. No index, no thumbnail, no metadata."""
    config = blosc_configuration(DEFAULT_COMPRESSION or "blosc-lz4", data.dtype)
    codec = Blosc(cname=config["cname"], clevel=config["clevel"], shuffle=Blosc.SHUFFLE)
    out: list[bytes] = []
    level = data.reshape((-1, *data.shape[-2:]))
    while True:
        rows = max(1, (4 * 2**20) // (level.shape[-1] * level.dtype.itemsize))
        for plane in level:
            for y in range(0, plane.shape[0], rows):
                out.append(codec.encode(np.ascontiguousarray(plane[y : y + rows])))
        if max(level.shape[-2:]) <= 1024:
            return out
        h, w = level.shape[-2] // 2 * 2, level.shape[-1] // 2 * 2
        blocks = level[:, :h, :w].reshape(level.shape[0], h // 2, 2, w // 2, 2)
        level = blocks.mean(axis=(2, 4), dtype=np.float32).astype(level.dtype)


def floor(
    store: Any,
    folder: Path,
    nbytes: int,
    *,
    small_objects: bool,
    originals: bool = False,
    encode: bool = False,
    threads: int = bl.RAW_THREADS,
) -> Sample:
    """tifffile read + raw obstore put of every file's pixels (and the two zarr.json, for small files);
    with `originals`, the file's own bytes put too (what keeping the original costs at the least); with
    `encode`, the pixels put as mikro's default layout encodes them (`_same_encoding`); `threads` files
    at once."""
    paths = sorted(folder.iterdir())
    prefix = f"floor{time.monotonic_ns()}"
    small = (
        list(zip(bl.IMAGE_SIDE_KEYS, map(bytes, bl.IMAGE_SIDE_OBJECTS), strict=True)) if small_objects else []
    )

    def one(i: int) -> None:
        data = tifffile.imread(paths[i])
        shard = f"{prefix}/{i}/{bl.IMAGE_SHARD_KEY}"
        if encode:
            obstore.put(store, shard, b"".join(_same_encoding(data)))
        else:
            obstore.put(store, shard, memoryview(np.ascontiguousarray(data)).cast("B"))
        for key, body in small:
            obstore.put(store, f"{prefix}/{i}/{key}", body)
        if originals:
            obstore.put(store, f"{prefix}/{i}/original", paths[i].read_bytes())

    with timed() as clock, ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(paths))))
    with contextlib.suppress(Exception):
        bl.wipe(store, prefix)
    return Sample(clock.seconds, clock.cpu, nbytes, value=len(paths) / clock.seconds)


def hash_floor(folder: Path, nbytes: int) -> Sample:
    """The ingest's fingerprints of the same files and nothing else, in one worker thread per
    `HASH_BATCH` files as the ingest hashes them: what knowing a rerun's work costs at the least."""
    from mikro.ingest._pipeline import HASH_BATCH, _hash_all

    paths = sorted(folder.iterdir())
    batches = [paths[i : i + HASH_BATCH] for i in range(0, len(paths), HASH_BATCH)]
    with timed() as clock, ThreadPoolExecutor(bl.RAW_THREADS) as pool:
        list(pool.map(_hash_all, batches))
    return Sample(clock.seconds, clock.cpu, nbytes, value=len(paths) / clock.seconds)


def _ratio(text: str, mikro: Figure | None, base: Figure | None, bound: float) -> Check:
    if mikro is None or base is None or mikro.value is None or not base.value:
        return Check(text, None, "missing figure")
    r = mikro.value / base.value
    return Check(text, r >= bound, f"{r:.2f}x {base.contender} (≥ {bound})")


def _faster(*figures: Figure | None) -> Figure | None:
    """The floor is the fastest way measured of doing the work (the other ways printed beside it)."""
    measured = [f for f in figures if f is not None and f.value]
    return max(measured, key=lambda f: f.value or 0.0) if measured else None


def bar_big(ctx: Context, fs: FileSizes, where: str) -> BarResult:
    folder = ctx.workdir / "big"
    if not folder.exists():
        ctx.cache["big_bytes"] = write_files(folder, fs.big_files, fs.big_side, fs.channels, ome=True)
    nbytes = int(ctx.cache["big_bytes"])  # type: ignore[call-overload]
    if where == "local":
        server = ctx.server("local")
        store: Any = bl.LocalStore(Path(tempfile.mkdtemp(dir=ctx.workdir)), mkdir=True)
    else:
        server = ctx.server("s3")
        store = bl.s3_store(ctx.moto, ctx.bucket("bench-files"), unsigned_payload=True)
    _warm_up(ctx, server)
    plain = {"compression": None, "pyramid": None}
    # (contender, role, run, note); mikro's rows come first, each judged against the floor after "vs".
    rows: list[tuple[str, str, Any, str]] = [
        (LIKE, "mikro", lambda: mikro_ingest(server, folder, nbytes, keep_original=False, **plain), ""),
        (DEFAULTS, "mikro", lambda: mikro_ingest(server, folder, nbytes, keep_original=False), ""),
        (KEPT, "mikro", lambda: mikro_ingest(server, folder, nbytes), ""),
        (RAW, "baseline", lambda: floor(store, folder, nbytes, small_objects=False), "the floor"),
        (
            ENCODED,
            "baseline",
            lambda: floor(store, folder, nbytes, small_objects=False, encode=True),
            "the same-encoding floor",
        ),
        (
            RAW_KEPT,
            "baseline",
            lambda: floor(store, folder, nbytes, small_objects=False, originals=True),
            "the floor with originals",
        ),
        (HASHED, "baseline", lambda: hash_floor(folder, nbytes), "what resumability costs at least"),
    ]
    got = interleave(synced({name: run for name, _, run, _ in rows}), ctx.runs, log=ctx.log)
    figs = {name: figure_from(name, role, got[name], note=note) for name, role, _, note in rows}  # type: ignore[arg-type]
    for name in (LIKE, DEFAULTS, KEPT):
        fig = figs[name]
        if fig.extra.get("server_cpu_s") is not None:
            fig.note = f"server CPU {fig.extra['server_cpu_s'] / (nbytes / 2**30):.2f} s/GiB"
    title = "folder store" if where == "local" else "S3 (moto)"
    return BarResult(
        f"ingest_files_{where}",
        f"ingest OME-TIFF files to {title}",
        f"{fs.big_files} OME-TIFF of {fs.big_side}x{fs.big_side}x{fs.channels}ch uint16 "
        f"({nbytes / MIB:.0f} MiB), {CONCURRENCY} files in flight",
        "≥ 0.8x the floor (like for like: uncompressed, no pyramid, no originals); the others printed",
        list(figs.values()),
        [
            _ratio("like for like ≥ 0.8x the floor (the bar)", figs[LIKE], figs[RAW], 0.8),
            _ratio("defaults ≥ 0.8x the same-encoding floor", figs[DEFAULTS], figs[ENCODED], 0.8),
            _ratio("originals kept ≥ 0.8x the floor with originals", figs[KEPT], figs[RAW_KEPT], 0.8),
        ],
    )


def synced(contenders: dict[str, Callable[[], Sample]]) -> dict[str, Callable[[], Sample]]:
    """`_ingest.settled`, then `os.sync()` right before each contender: every contender starts with no
    dirty page of the one before (its files, its cleanup) still to be written back to the disk the
    folder store shares, which a contender after a writer otherwise pays for."""

    def wrap(fn: Callable[[], Sample]) -> Callable[[], Sample]:
        def run() -> Sample:
            os.sync()
            return fn()

        return run

    return settled({name: wrap(fn) for name, fn in contenders.items()})


def _warm_up(ctx: Context, server: MikroServer) -> None:
    """Ingest one small file untimed in this process (once per server): the imports and first-use
    costs of a process's first ingest (readers, the pixel stack, the HTTP client's setup) are not what
    an ingest of many files costs per GiB, and the floor's imports are done before it is timed too."""
    key = f"warm-{id(server)}"
    if key in ctx.cache:
        return
    folder = ctx.workdir / key
    nbytes = write_files(folder, 1, 256, 2, ome=True)
    mikro_ingest(server, folder, nbytes)
    ctx.cache[key] = nbytes


def _small_folder(ctx: Context, fs: FileSizes) -> tuple[Path, int]:
    folder = ctx.workdir / "small"
    if not folder.exists():
        ctx.cache["small_bytes"] = write_files(folder, fs.small_files, fs.small_side, 1, ome=False)
    return folder, int(ctx.cache["small_bytes"])  # type: ignore[call-overload]


SMALL_KEPT = "mikro ingest (defaults: originals kept)"
SMALL_BARE = "mikro ingest, no originals"
SMALL_ARRAYS = "create_representation of the same arrays"
SMALL_RAW = "tifffile read + raw put of each image's objects"
SMALL_RAW_KEPT = "tifffile read + raw put of each image's objects + put original"
#: The floors again with one thread per core, as mikro works on small local files (`local_limiter`):
#: on 2 cores that was the faster way for the floor too.
FEW = cores()
SMALL_RAW_FEW = f"{SMALL_RAW}, {FEW} threads"
SMALL_RAW_KEPT_FEW = f"{SMALL_RAW_KEPT}, {FEW} threads"


def bar_small(ctx: Context, fs: FileSizes) -> BarResult:
    folder, nbytes = _small_folder(ctx, fs)
    server = ctx.server("local")
    _warm_up(ctx, server)
    store = bl.LocalStore(Path(tempfile.mkdtemp(dir=ctx.workdir)), mkdir=True)
    # (contender, role, run, note): each mikro row is judged against the floor doing the same work.
    rows: list[tuple[str, str, Callable[[], Sample], str]] = [
        (SMALL_KEPT, "mikro", lambda: mikro_ingest(server, folder, nbytes), ""),
        (SMALL_BARE, "mikro", lambda: mikro_ingest(server, folder, nbytes, keep_original=False), ""),
        (SMALL_ARRAYS, "baseline", lambda: mikro_arrays(server, folder, nbytes), ""),
        (SMALL_RAW, "baseline", lambda: floor(store, folder, nbytes, small_objects=True), "the floor"),
        (
            SMALL_RAW_KEPT,
            "baseline",
            lambda: floor(store, folder, nbytes, small_objects=True, originals=True),
            "the floor with originals",
        ),
        (
            SMALL_RAW_FEW,
            "baseline",
            lambda: floor(store, folder, nbytes, small_objects=True, threads=FEW),
            "the floor",
        ),
        (
            SMALL_RAW_KEPT_FEW,
            "baseline",
            lambda: floor(store, folder, nbytes, small_objects=True, originals=True, threads=FEW),
            "the floor with originals",
        ),
    ]
    got = interleave(synced({name: run for name, _, run, _ in rows}), ctx.runs, log=ctx.log)
    figs = {
        name: figure_from(
            name,
            role,  # type: ignore[arg-type]
            got[name],
            unit="images/s",
            value=lambda s: float(s.value or 0.0),
            note=note,
        )
        for name, role, _, note in rows
    }
    images = fs.small_files
    for name, fig in figs.items():
        runs = got[name]
        if isinstance(runs, str) or not runs:
            continue
        per_image = [f"client CPU {1000 * statistics.median(s.cpu for s in runs) / images:.2f} ms/image"]
        server_cpu = [s.extra["server_cpu_s"] for s in runs if "server_cpu_s" in s.extra]
        if server_cpu:
            per_image.append(f"server CPU {1000 * statistics.median(server_cpu) / images:.2f} ms/image")
        fig.note = "; ".join([*([fig.note] if fig.note else []), *per_image])
    return BarResult(
        "ingest_files_small",
        "ingest small TIFFs (folder store)",
        f"{fs.small_files} TIFFs of {fs.small_side}x{fs.small_side} uint16, {CONCURRENCY} files in flight; "
        f"each floor with {bl.RAW_THREADS} and with {FEW} threads, the faster taken",
        "≥ 0.5x the floor doing the same work (images/s): originals kept against the floor with "
        "originals, no originals against the floor",
        list(figs.values()),
        [
            _ratio(
                "originals kept ≥ 0.5x the floor with originals (the default)",
                figs[SMALL_KEPT],
                _faster(figs[SMALL_RAW_KEPT], figs[SMALL_RAW_KEPT_FEW]),
                0.5,
            ),
            _ratio(
                "no originals ≥ 0.5x the floor",
                figs[SMALL_BARE],
                _faster(figs[SMALL_RAW], figs[SMALL_RAW_FEW]),
                0.5,
            ),
        ],
    )


def bar_rerun(ctx: Context, fs: FileSizes) -> BarResult:
    folder, nbytes = _small_folder(ctx, fs)
    server = ctx.server("local")
    _warm_up(ctx, server)
    got = interleave(
        synced({"mikro rerun": lambda: mikro_ingest(server, folder, nbytes, rerun=True)}),
        ctx.runs,
        log=ctx.log,
    )
    fig = figure_from(
        "mikro rerun", "mikro", got["mikro rerun"], unit="files/s", value=lambda s: float(s.value or 0.0)
    )
    ok = None if fig.value is None else fig.value >= 2000
    return BarResult(
        "ingest_files_rerun",
        "rerun of an ingested folder",
        f"{fs.small_files} files already stored: hash each, one sourcesIngested request per 2,000",
        "≥ 2,000 files/s",
        [fig],
        [Check("≥ 2,000 files/s", ok, "" if fig.value is None else f"{fig.value:,.0f} files/s")],
        ratio=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per bar")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) bar")
    parser.add_argument(
        "--bars",
        default="local,s3,small,rerun",
        help="the bars to run, comma-separated, of local, s3, small, rerun (default: all)",
    )
    args = parser.parse_args(argv)
    fs = FileSizes.quick() if args.quick else FileSizes.full()
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    workdir = Path(tempfile.mkdtemp(prefix="mikro-bench-files-"))
    bars: list[BarResult] = []

    def log(msg: str) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} {msg}", markup=False, highlight=False)

    setup = {
        "mode": "quick" if args.quick else "full",
        "runs": f"{args.runs} interleaved, medians reported",
        "files": f"big: {fs.big_files} x {fs.big_side}x{fs.big_side}x{fs.channels}ch uint16 OME-TIFF; "
        f"small: {fs.small_files} x {fs.small_side}x{fs.small_side} uint16 TIFF",
        "cores": f"{os.cpu_count()}, load average at start " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "file system at start": file_creation_cost(workdir),
    }
    try:
        with contextlib.ExitStack() as stack:
            ctx = Context(sizes=Sizes.quick(), runs=args.runs, workdir=workdir, stack=stack, log=log)
            wanted = set(args.bars.split(",")) - ({"s3"} if args.no_s3 else set())
            for name, run in (
                ("ingest_files_local", lambda: bar_big(ctx, fs, "local")),
                ("ingest_files_s3", lambda: bar_big(ctx, fs, "s3")),
                ("ingest_files_small", lambda: bar_small(ctx, fs)),
                ("ingest_files_rerun", lambda: bar_rerun(ctx, fs)),
            ):
                if name.removeprefix("ingest_files_") not in wanted:
                    continue
                log(f"bar {name}")
                result = run()
                if result is not None:
                    bars.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(console, setup, bars)
    json_path = args.json or Path(tempfile.gettempdir()) / "mikro-bench-files.json"
    write_json(json_path, setup, bars)
    console.print(f"JSON written to {json_path}")
    return 0


if __name__ == "__main__":
    from run import exit_now

    exit_now(main())
