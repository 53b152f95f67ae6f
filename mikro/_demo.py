"""``mikro demo``: the main job on the embedded default, end to end, in well under a minute.

Starts the reference server as a child process on a fresh data dir, creates a sample and an
experiment, uploads a synthetic multi-channel z-stack (blurred blobs, generated lazily plane by plane
with dask), lists it back with its relations, computes a lazy max projection and one plane's statistics
off the event loop while a heartbeat task checks the loop stays responsive, and prints a summary.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

__all__ = ["DemoResult", "run_demo", "synthetic_stack"]

CHANNELS = ("DAPI", "GFP", "mCherry")
PLANE = (1024, 1024)
PIXEL_SIZE = {"x": 0.1625, "y": 0.1625, "z": 0.5}
_LISTENING = re.compile(r"mikro: listening on (\S+)")
SERVER_START_TIMEOUT = 120.0


@dataclass
class DemoResult:
    """What the demo measured (also printed as its summary)."""

    representation_id: str = ""
    shape: tuple[int, ...] = ()
    raw_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    plane_stats: dict[str, float] = field(default_factory=dict)
    projection_max: float = 0.0
    worst_heartbeat_lag: float = 0.0
    listed: list[str] = field(default_factory=list)


def synthetic_stack(size_mib: float, *, seed: int = 0) -> Any:
    """A lazy (dask) ``c, z, y, x`` uint16 stack of about ``size_mib`` MiB: blurred blobs plus noise.

    Each plane is drawn when dask asks for it, so generating costs one plane of memory at a time.
    """
    import dask.array as da
    import xarray as xr

    plane_bytes = PLANE[0] * PLANE[1] * 2
    planes = max(1, round(size_mib * 2**20 / plane_bytes / len(CHANNELS)))
    shape = (len(CHANNELS), planes, *PLANE)
    rng = np.random.default_rng(seed)
    n_blobs = 60
    centers = rng.uniform([0, 0, 0], [planes, PLANE[0], PLANE[1]], size=(len(CHANNELS), n_blobs, 3))
    sigmas = rng.uniform(4, 14, size=(len(CHANNELS), n_blobs))
    amplitudes = rng.uniform(800, 3000, size=(len(CHANNELS), n_blobs))
    noise = rng.poisson(100, size=PLANE).astype(np.float32)

    def draw(block: np.ndarray[Any, Any], block_info: Any = None) -> np.ndarray[Any, Any]:
        c, z = block_info[None]["chunk-location"][:2]
        plane = np.roll(noise, shift=(17 * z + 101 * c, 31 * z), axis=(0, 1)).copy()
        sigma_z = 2.0
        for (cz, cy, cx), s, a in zip(centers[c], sigmas[c], amplitudes[c], strict=True):
            weight = a * math.exp(-((z - cz) ** 2) / (2 * sigma_z**2))
            if weight < 1:
                continue
            r = int(3 * s)
            y0, y1 = max(0, int(cy) - r), min(PLANE[0], int(cy) + r)
            x0, x1 = max(0, int(cx) - r), min(PLANE[1], int(cx) + r)
            yy = np.arange(y0, y1)[:, None] - cy
            xx = np.arange(x0, x1)[None, :] - cx
            plane[y0:y1, x0:x1] += weight * np.exp(-(yy**2 + xx**2) / (2 * s * s))
        out = np.clip(plane, 0, 65535).astype(np.uint16)
        return out[None, None]

    template = da.zeros(shape, dtype=np.uint16, chunks=(1, 1, *PLANE))
    data = template.map_blocks(draw, dtype=np.uint16)
    return xr.DataArray(
        data,
        dims=("c", "z", "y", "x"),
        coords={
            "c": list(CHANNELS),
            "z": np.arange(planes) * PIXEL_SIZE["z"],
            "y": np.arange(PLANE[0]) * PIXEL_SIZE["y"],
            "x": np.arange(PLANE[1]) * PIXEL_SIZE["x"],
        },
        name="demo-stack",
    )


@contextmanager
def reference_server(data_dir: Path) -> Iterator[tuple[str, str]]:
    """``mikro serve`` as a child process on a free loopback port; yields (url, admin token).

    A child process (spawned, not forked) keeps the server's CPU and GIL out of the client's numbers.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "mikro", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--data-dir", str(data_dir)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the reference server did not start:\n{log_path.read_text(errors='replace')}"
                )
            time.sleep(0.05)
        token = (data_dir / "admin-token").read_text().strip()
        yield match.group(1), token
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _demo(url: str, token: str, size_mib: float, console: Any) -> DemoResult:
    import xarray as xr
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    import mikro

    result = DemoResult()
    async with mikro.connect(url, token=token, timeout=60) as m:
        sample = await m.create_sample(name="demo sample", description="synthetic blobs")
        experiment = await m.create_experiment(name="demo experiment")
        stack = synthetic_stack(size_mib)
        result.shape = tuple(int(n) for n in stack.shape)
        result.raw_bytes = int(stack.nbytes)

        # The bar shows the same figure as the summary: bytes so far over time since the start, in MiB/s
        # (rich's own speed column is a recent-window rate in decimal MB/s: another figure, another unit).
        columns = (
            BarColumn(),
            DownloadColumn(binary_units=True),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        with Progress(*Progress.get_default_columns()[:1], *columns, console=console) as bar:
            task = bar.add_task("upload", total=result.raw_bytes, rate="")

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, rate=mib_per_s(done, time.perf_counter() - started))

            started = time.perf_counter()
            rep = await m.create_representation(
                stack,
                name="demo z-stack",
                sample=sample,
                experiments=[experiment],
                tags=["demo", "synthetic"],
                progress=progress,
            )
            result.timings["upload"] = time.perf_counter() - started
            bar.update(task, rate=mib_per_s(result.raw_bytes, result.timings["upload"]))
        result.representation_id = rep.id

        listed = await m.list_representations(sample=sample)
        for r in listed:
            experiments = ", ".join(e.name for e in r.experiments or [])
            channels = ", ".join(c.name or "?" for c in r.channels)
            sample_name = r.sample.name if r.sample else None
            result.listed.append(
                f"#{r.id} {r.name!r} dims {r.dims} shape {r.shape} {r.dtype}; sample {sample_name!r}; "
                f"experiments [{experiments}]; channels [{channels}]; {len(r.thumbnails or [])} thumbnail(s)"
            )

        worst = 0.0
        done = anyio.Event()

        async def heartbeat() -> None:
            nonlocal worst
            while not done.is_set():
                before = time.perf_counter()
                await anyio.sleep(0.01)
                worst = max(worst, time.perf_counter() - before - 0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            data = rep.data
            started = time.perf_counter()
            projection = await m.compute(data.max("z"))
            result.timings["max projection"] = time.perf_counter() - started
            result.projection_max = float(projection.max())

            plane = data.isel(c=1, z=data.sizes["z"] // 2)
            started = time.perf_counter()
            stats = await m.compute(
                xr.Dataset({"min": plane.min(), "max": plane.max(), "mean": plane.mean(), "std": plane.std()})
            )
            result.timings["plane statistics"] = time.perf_counter() - started
            result.plane_stats = {k: float(v) for k, v in stats.data_vars.items()}
            done.set()
        result.worst_heartbeat_lag = worst
    return result


def mib_per_s(nbytes: int, seconds: float) -> str:
    """The one way the demo shows a rate (its progress bar and its summary alike)."""
    return f"{nbytes / 2**20 / seconds:.0f} MiB/s" if seconds > 0 else ""


def _summary(result: DemoResult, console: Any, total: float) -> None:
    from rich.table import Table

    mib = result.raw_bytes / 2**20
    console.print()
    for line in result.listed:
        console.print(f"listed: {line}", markup=False)
    table = Table(title="mikro demo", show_header=True)
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("throughput", justify="right")
    for step, seconds in result.timings.items():
        rate = mib_per_s(result.raw_bytes, seconds) if step != "plane statistics" else ""
        table.add_row(step, f"{seconds:.2f}", rate)
    table.add_row("total (with server start)", f"{total:.2f}", "")
    console.print(table)
    stats = ", ".join(f"{k} {v:.1f}" for k, v in result.plane_stats.items())
    console.print(f"image {result.representation_id}: shape {result.shape} uint16, {mib:.0f} MiB raw")
    console.print(f"max projection peak {result.projection_max:.0f}; middle GFP plane: {stats}")
    console.print(
        f"event loop worst heartbeat lag while computing: {result.worst_heartbeat_lag * 1000:.1f} ms"
    )


def run_demo(
    *,
    size_mib: float = 256.0,
    data_dir: Path | None = None,
    backend: str = "asyncio",
    keep: bool = False,
) -> DemoResult:
    """Run the demo (blocking) and print its summary; returns what it measured."""
    from rich.console import Console

    console = Console()
    started = time.perf_counter()
    own_dir = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="mikro-demo-")) if data_dir is None else data_dir
    try:
        console.print(f"starting the reference server on a fresh data dir: {directory}")
        with reference_server(directory) as (url, token):
            console.print(f"server at {url}; uploading a {size_mib:.0f} MiB synthetic z-stack ({backend})")
            result = anyio.run(_demo, url, token, size_mib, console, backend=backend)
        _summary(result, console, time.perf_counter() - started)
        return result
    finally:
        if own_dir and not keep:
            shutil.rmtree(directory, ignore_errors=True)
        elif keep:
            console.print(f"data kept in {directory}")
