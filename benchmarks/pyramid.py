"""Pyramid bars (issue 12), each beside its baseline measured in the same run.

    python benchmarks/pyramid.py [--quick] [--size 8192] [--runs 3]

1. upload with a pyramid vs without: mikro's writer (the client side of ``create_representation``) to a
   local folder store, 2 channels of uint16 at size x size; target <= 1.35x the time without.
2. the same pyramid (levels 2x, 4x, 8x, mean) built and written by ngff-zarr (``to_multiscales`` with
   ``itkwasm_bin_shrink``, its block mean, then ``to_ngff_zarr``, sharded) and by ome-zarr-py
   (``write_image`` with ``local_mean``), from the same numpy array to the same kind of store (a local
   folder); mikro should be faster than both. Peak memory is each contender's own process (every
   contender runs in a fresh child process), and the part above the input array.
3. a napari-style overview: reading the coarsest level of the stored image vs reading level 0 and
   downsampling it to the same size; target >= 20x faster.

Client CPU is the child's ``process_time``; CPU per GiB is per GiB of level 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GIB = 2**30
MIB = 2**20
CHANNELS = 2
LEVELS = 4  # 8192 -> 4096 -> 2048 -> 1024: what pyramid="auto" makes of an 8192 image

WRITERS = ("mikro, no pyramid", "mikro, pyramid", "ngff-zarr", "ome-zarr-py")


def _values(size: int) -> Any:
    import numpy as np

    # Smooth structure plus noise: compresses like a fluorescence image, not like random bytes.
    # Made in bands of rows, so that making it does not raise the process's peak memory much above it.
    rng = np.random.default_rng(0)
    y = np.linspace(0, 12, size, dtype=np.float32)[:, None]
    x = np.linspace(0, 12, size, dtype=np.float32)[None, :]
    out = np.empty((CHANNELS, size, size), dtype=np.uint16)
    band = 256
    for c in range(CHANNELS):
        for y0 in range(0, size, band):
            plane = (np.sin(y[y0 : y0 + band] + c) * np.cos(x * (c + 1)) + 1.0) * 1500
            noise = rng.integers(0, 200, plane.shape, dtype=np.uint16)
            out[c, y0 : y0 + band] = plane.astype(np.uint16) + noise
    return out


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write(name: str, values: Any, path: Path) -> None:
    if name.startswith("mikro"):
        import anyio
        from _context import folder_store

        from mikro.datalayer import prepare_image, write_image

        image = prepare_image(values, dims="cyx", pixel_size={"x": 0.1, "y": 0.1})
        pyramid = "auto" if name == "mikro, pyramid" else None
        store = folder_store(path)

        async def run() -> None:
            await write_image(store, image, pyramid=pyramid, limiter=anyio.CapacityLimiter(8))

        anyio.run(run)
    elif name == "ngff-zarr":
        import ngff_zarr

        image = ngff_zarr.to_ngff_image(values, dims=["c", "y", "x"], scale={"y": 0.1, "x": 0.1})
        multiscales = ngff_zarr.to_multiscales(
            image,
            scale_factors=[2 ** (k + 1) for k in range(LEVELS - 1)],
            method=ngff_zarr.Methods.ITKWASM_BIN_SHRINK,
            chunks={"c": 1, "y": 1024, "x": 1024},
        )
        ngff_zarr.to_ngff_zarr(str(path), multiscales, version="0.5", chunks_per_shard={"y": 4, "x": 4})
    elif name == "ome-zarr-py":
        import zarr
        from ome_zarr.scale import Methods
        from ome_zarr.writer import write_image as ome_write_image

        group = zarr.open_group(str(path), mode="w")
        ome_write_image(
            values,
            group,
            axes="cyx",
            scale_factors=[2 ** (k + 1) for k in range(LEVELS - 1)],
            method=Methods.LOCAL_MEAN,
        )
    else:
        raise ValueError(name)


def _read(path: Path, size: int) -> dict[str, float]:
    """Coarsest level vs level 0 + downsampling, both through mikro's reader on the stored image."""
    import numpy as np
    from _context import folder_store

    from mikro.datalayer import downsample, open_dataarray
    from mikro.datalayer._layout import choose_layout
    from mikro.datalayer._pyramid import plan_levels

    store = folder_store(path)
    base = choose_layout((CHANNELS, size, size), np.dtype(np.uint16), ("c", "y", "x"))
    layouts, _ = plan_levels(base, {}, "auto")

    def view(k: int) -> Any:
        lay = layouts[k]
        return open_dataarray(
            store,
            shape=lay.shape,
            chunks=lay.chunks,
            shards=lay.shards,
            dtype=lay.dtype,
            dims=lay.dims,
            array_path=lay.path,
        )

    def coarsest() -> Any:
        return view(len(layouts) - 1).values

    def from_level_0() -> Any:
        full = view(0).values
        for _ in range(len(layouts) - 1):
            full = downsample(full, (1, 2), "mean")
        return full

    assert np.array_equal(coarsest(), from_level_0())  # also warms the thread pools up
    timings = {}
    for label, read in (("coarsest", coarsest), ("level 0 + downsample", from_level_0)):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            read()
            best = min(best, time.perf_counter() - started)
        timings[label] = best
    return timings


#: What each contender imports before its clock starts (imports are not the writer's work).
IMPORTS = {
    "mikro": ("anyio", "dask.array", "xarray", "mikro.datalayer"),
    "ngff-zarr": ("ngff_zarr", "itkwasm_downsample", "dask.array"),
    "ome-zarr-py": ("zarr", "ome_zarr.writer", "ome_zarr.scale", "dask.array"),
}


def child(name: str, size: int, out: Path) -> dict[str, Any]:
    import importlib

    for module in IMPORTS[name.split(",")[0]]:
        importlib.import_module(module)
    values = _values(size)
    before = _rss_mib()
    cpu, started = time.process_time(), time.perf_counter()
    _write(name, values, out)
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "seconds": seconds,
        "cpu": time.process_time() - cpu,
        "peak_mib": _rss_mib(),
        "above_input_mib": _rss_mib() - before,
        "stored_mib": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / MIB,
    }
    if name == "mikro, pyramid":
        result["read"] = _read(out, size)
    return result


def _run_child(name: str, size: int, workdir: Path) -> dict[str, Any]:
    out = workdir / (name.replace(" ", "_").replace(",", "") + ".zarr")
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--size", str(size), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2048 x 2048, one run")
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, Path(args.out))))
        return
    size, runs = (2048, 1) if args.quick else (args.size, args.runs)
    gib = CHANNELS * size * size * 2 / GIB
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in WRITERS}
    with tempfile.TemporaryDirectory(prefix="mikro-pyramid-bench-") as tmp:
        for _ in range(runs):  # interleaved: A, B, C, D, A, B, C, D ...
            for name in WRITERS:
                results[name].append(_run_child(name, size, Path(tmp)))
    print(f"pyramid bars: {CHANNELS} x {size} x {size} uint16 ({gib * 1024:.0f} MiB), local folder store,")
    print(
        f"medians of {runs} interleaved run(s), each contender in a fresh process; {os.cpu_count()} cores\n"
    )
    print(
        f"{'contender':<20}{'wall s':>9}{'CPU s/GiB':>11}{'peak MiB':>10}{'+input MiB':>12}{'stored MiB':>12}"
    )
    medians: dict[str, dict[str, float]] = {}
    for name, rows in results.items():
        ok = [r for r in rows if "error" not in r]
        if not ok:
            print(f"{name:<20}  ERROR: {rows[0]['error']}")
            continue
        med = {
            k: statistics.median(r[k] for r in ok)
            for k in ("seconds", "cpu", "peak_mib", "above_input_mib", "stored_mib")
        }
        medians[name] = med
        print(
            f"{name:<20}{med['seconds']:>9.2f}{med['cpu'] / gib:>11.1f}{med['peak_mib']:>10.0f}"
            f"{med['above_input_mib']:>12.0f}{med['stored_mib']:>12.0f}"
        )
    print()
    flat, pyr = medians.get("mikro, no pyramid"), medians.get("mikro, pyramid")
    if flat and pyr:
        ratio = pyr["seconds"] / flat["seconds"]
        verdict = "PASS" if ratio <= 1.35 else "MISS"
        print(f"bar 1  upload with pyramid / without: {ratio:.2f}x  (target <= 1.35x)  {verdict}")
    for peer in ("ngff-zarr", "ome-zarr-py"):
        if pyr and peer in medians:
            ratio = medians[peer]["seconds"] / pyr["seconds"]
            print(
                f"bar 2  {peer} time / mikro's: {ratio:.2f}x  (target > 1)  {'PASS' if ratio > 1 else 'MISS'}"
            )
    reads = [r["read"] for r in results["mikro, pyramid"] if "read" in r]
    if reads:
        coarse = statistics.median(r["coarsest"] for r in reads)
        full = statistics.median(r["level 0 + downsample"] for r in reads)
        ratio = full / coarse
        print(
            f"bar 3  overview read: coarsest level {coarse * 1000:.0f} ms, level 0 + downsample "
            f"{full * 1000:.0f} ms: {ratio:.0f}x  (target >= 20x)  {'PASS' if ratio >= 20 else 'MISS'}"
        )


if __name__ == "__main__":
    main()
