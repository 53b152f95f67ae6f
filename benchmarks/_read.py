"""Read bars: full read of one image, bytes fetched for one z-plane, loop responsiveness."""

from __future__ import annotations

import struct
from typing import Any

import _baselines as bl
import _mikro
import numpy as np
import obstore
from _context import Context
from _harness import (
    MIB,
    BarResult,
    Check,
    Figure,
    Sample,
    figure_from,
    interleave,
    median_sample,
    repeated_note,
    timed,
)
from _proxy import ByteCountingProxy, counting_proxy

__all__ = ["REPEATS", "bar_loop_lag", "bar_read", "bar_zplane", "read_image"]

#: Full reads of mikro and of the raw floor inside one run, in one session / with one store: the run's
#: figure is their median (single reads of 0.1-0.3 s varied by 2x on a busy machine).
REPEATS = 5


def read_image(ctx: Context) -> _mikro.StoredImage:
    """The image the read bars use, uploaded once through mikro (uncompressed, so raw get is the limit)."""
    s = ctx.sizes
    planes = ("read", s.read_planes, s.read_side)
    return _mikro.uploaded_once(ctx, "read_image", "s3", planes, compressed=False, fallback=True)


def bar_read(ctx: Context) -> BarResult:
    img = read_image(ctx)
    writer = "zarr-python (mikro could not upload)" if "read_image_fallback" in ctx.cache else "mikro"
    store = bl.s3_store(ctx.moto, img.bucket, prefix=img.key)
    stored, paths = bl.stored_bytes(store)

    def raw() -> Sample:
        samples = []
        for _ in range(REPEATS):
            with timed() as clock:
                n = bl.raw_get(store, paths)
            samples.append(Sample(clock.seconds, clock.cpu, n))
        return median_sample(samples)

    meta = _mikro.zarr_json(ctx, img)
    inner = meta["chunk_grid"]["configuration"]["chunk_shape"]
    if meta["codecs"][0]["name"] == "sharding_indexed":
        inner = meta["codecs"][0]["configuration"]["chunk_shape"]
    chunk_nbytes = int(np.prod(inner)) * np.dtype(img.dtype_name).itemsize
    sizes = bl.object_sizes(store)

    def ranged() -> Sample:
        with timed() as clock:
            n = bl.raw_get_ranges(store, sizes, chunk_nbytes)
        return Sample(clock.seconds, clock.cpu, n)

    def ts() -> Sample:
        with timed() as clock:
            out = bl.ts_read(ctx.moto, img.bucket, f"{img.key}/{img.array}")
        assert out.nbytes == img.nbytes
        return Sample(clock.seconds, clock.cpu, img.nbytes)

    def zarr() -> Sample:
        with timed() as clock:
            out = bl.zarr_obstore_read(store, img.array)
        assert out.nbytes == img.nbytes
        return Sample(clock.seconds, clock.cpu, img.nbytes)

    fresh = "raw obstore get into one array, fresh process"
    contenders = {
        "mikro": lambda: _mikro.read_full(ctx, img, repeats=REPEATS),
        "raw obstore get": raw,
        "mikro, plain dask .max().compute()": lambda: _mikro.read_plain(ctx, img, "max"),
        "mikro, plain rep.data.values": lambda: _mikro.read_plain(ctx, img, "values"),
        fresh: lambda: _raw_fresh(ctx, img, paths, store),
        "raw get_range per chunk": ranged,
        "tensorstore zarr3": ts,
        "zarr3 + obstore": zarr,
    }
    got = interleave(contenders, ctx.runs, log=ctx.log)
    figs = [
        figure_from(
            n,
            "mikro" if n.startswith("mikro") else "baseline",
            got[n],
            note="the limit" if n.startswith("raw obstore") else "",
        )
        for n in contenders
    ]
    figs[2].note = (
        "a script's rep.data.max().compute() (sync facade, fresh process), no m.compute: chunk tasks "
        "sharing one GET per shard, shards fetched 4 at once ahead of them in the order they ask, raw chunks "
        "handed out as views of their shard"
    )
    figs[3].note = (
        "a script's rep.data.values (sync facade, fresh process), no m.compute: one dask task reads the "
        "image shard by shard into one array, which is the result (no concatenation); its new memory backed "
        "with pages before the reads"
    )
    figs[4].note = (
        "the plain contenders' floor: a script's own process, its result in new memory (page faults "
        "the long-lived benchmark process, reusing freed pages, does not pay in full)"
    )
    chunk_mib = f"{chunk_nbytes / MIB:g} MiB"
    figs[5].note = f"one range GET per {chunk_mib} chunk (what a plain dask .compute() did before stop 4)"
    mikro, raw_fig, fresh_fig = figs[0], figs[1], figs[4]
    for plain in figs[2:4]:
        if plain.value and fresh_fig.value:
            plain.note += f"; {plain.value / fresh_fig.value:.2f}x the fresh-process floor"
    mikro.note = repeated_note(got["mikro"], REPEATS)
    raw_fig.note = f"the limit; each run the median of {REPEATS} gets of every object"
    checks = [_ratio(mikro, raw_fig, 0.85), _cpu(mikro, 1.5)]
    checks += [
        _ratio(plain, raw_fig, 0.8, who=plain.contender.removeprefix("mikro, ")) for plain in figs[2:4]
    ]
    s = ctx.sizes
    return BarResult(
        "read",
        "full read of one image from S3",
        f"one {s.read_planes}x{s.read_side}x{s.read_side} uint16 image ({img.nbytes / MIB:.0f} MiB) "
        f"written by {writer} without compression ({len(paths)} objects, {stored / MIB:.0f} MiB stored); "
        "mikro: await m.compute(rep.data); "
        f"raw: get of every object, {bl.RAW_THREADS} threads; tensorstore/zarr read mikro's store directly",
        "≥ 0.85x raw; CPU ≤ 1.5 s/GiB; plain dask idioms ≥ 0.8x raw",
        figs,
        checks,
    )


def _ratio(mikro: Figure, base: Figure, bound: float, *, who: str = "") -> Check:
    prefix = f"{who}: " if who else ""
    if mikro.value is None or not base.value:
        return Check(f"{prefix}≥ {bound}x {base.contender}", None, "missing figure")
    r = mikro.value / base.value
    return Check(f"{prefix}≥ {bound}x", r >= bound, f"{prefix}{r:.2f}x {base.contender} (≥ {bound})")


def _raw_fresh(ctx: Context, img: _mikro.StoredImage, paths: list[str], store: Any) -> Sample:
    """The raw get in a fresh process, into one new array (`_raw_child.py`)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    sizes = bl.object_sizes(store)
    spec = {
        "endpoint": ctx.moto.endpoint,
        "access_key": ctx.moto.access_key,
        "secret_key": ctx.moto.secret_key,
        "region": ctx.moto.region,
        "bucket": img.bucket,
        "prefix": img.key,
        "paths": paths,
        "sizes": [sizes[p] for p in paths],
    }
    child = Path(__file__).resolve().parent / "_raw_child.py"
    proc = subprocess.run(
        [sys.executable, str(child), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"raw child exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return Sample(got["seconds"], got["cpu"], got["nbytes"])


def _cpu(mikro: Figure, bound: float) -> Check:
    if mikro.cpu_s_per_gib is None:
        return Check(f"CPU ≤ {bound}", None, "missing figure")
    return Check(
        f"CPU ≤ {bound}", mikro.cpu_s_per_gib <= bound, f"{mikro.cpu_s_per_gib:.2f} CPU s/GiB (≤ {bound})"
    )


# --- one z-plane -----------------------------------------------------------------------------------


def _plane_chunk_bytes(store: Any, meta: dict[str, Any], array_prefix: str, z_axis: int, z: int) -> int:
    """Stored bytes of the chunks that hold plane `z` (read from the shard indexes, or object sizes)."""
    shape = meta["shape"]
    outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
    codecs = meta["codecs"]
    sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    grid = [range((n + c - 1) // c) for n, c in zip(shape, outer, strict=True)]
    grid[z_axis] = range(z // outer[z_axis], z // outer[z_axis] + 1)
    positions = np.array(np.meshgrid(*grid, indexing="ij")).reshape(len(shape), -1).T
    sharded = codecs[0]["name"] == "sharding_indexed"
    total = 0
    for pos in positions:
        key = f"{array_prefix}/c{sep}" + sep.join(str(int(p)) for p in pos)
        if not sharded:
            total += int(obstore.head(store, key)["size"])
            continue
        conf = codecs[0]["configuration"]
        inner = conf["chunk_shape"]
        per = [o // i for o, i in zip(outer, inner, strict=True)]
        n_chunks = int(np.prod(per))
        index_len = n_chunks * 16 + (
            4 if any(c["name"] == "crc32c" for c in conf.get("index_codecs", [])) else 0
        )
        size = int(obstore.head(store, key)["size"])
        at_start = conf.get("index_location", "end") == "start"
        start = 0 if at_start else size - index_len
        index = bytes(obstore.get_range(store, key, start=start, end=start + index_len))
        pairs = struct.unpack(f"<{2 * n_chunks}Q", index[: 16 * n_chunks])
        local_z = (z % outer[z_axis]) // inner[z_axis]
        for flat in range(n_chunks):
            coords = np.unravel_index(flat, per)
            if coords[z_axis] == local_z and pairs[2 * flat] != 2**64 - 1:
                total += pairs[2 * flat + 1]
        total += index_len  # a reader must fetch the index too
    return total


def bar_zplane(ctx: Context) -> BarResult:
    s = ctx.sizes
    key = "zplane"
    if key not in ctx.cache:
        proxy = ctx.enter(counting_proxy(ctx.moto.endpoint))
        ctx.server("proxied", s3_endpoint=proxy.endpoint)
        ctx.log("  via a byte-counting proxy")
        planes = ("zplane", s.zplane_planes, s.zplane_side)
        img = _mikro.uploaded_once(ctx, "zplane_image", "proxied", planes, compressed=True, fallback=True)
        ctx.cache[key] = (proxy, img)
    proxy, img = ctx.cache[key]
    assert isinstance(proxy, ByteCountingProxy)
    z = s.zplane_planes // 2
    admin = bl.s3_store(ctx.moto, img.bucket)
    meta = _mikro.zarr_json(ctx, img)
    z_axis = list(meta.get("dimension_names") or ["z", "y", "x"]).index("z")
    chunk_bytes = _plane_chunk_bytes(admin, meta, f"{img.key}/{img.array}", z_axis, z)

    def mikro_run() -> Sample:
        fetched, plane = _mikro.read_plane(ctx, img, z, proxy)
        return Sample(0.0, 0.0, value=fetched / MIB, extra={"plane_pixels_mib": plane / MIB})

    def zarr_run() -> Sample:
        # The same plane with plain zarr-python through the same proxy: what a well-behaved reader fetches.
        proxied = bl.s3_store(ctx.moto, img.bucket, prefix=img.key, endpoint=proxy.endpoint)
        import zarr
        from zarr.storage import ObjectStore

        proxy.reset()
        arr = zarr.open_array(ObjectStore(proxied, read_only=True), path=img.array, mode="r")
        index: list[Any] = [slice(None)] * len(arr.shape)
        index[z_axis] = z
        np.asarray(arr[tuple(index)])
        return Sample(0.0, 0.0, value=proxy.downstream / MIB)

    got = interleave({"mikro": mikro_run, "zarr3 + obstore": zarr_run}, ctx.runs, log=ctx.log)
    mikro = figure_from("mikro", "mikro", got["mikro"], unit="MiB", value=lambda x: x.value or 0.0)
    mikro.note = "bytes fetched (HTTP bodies + headers)"
    base = Figure(
        "plane's chunk bytes", "baseline", "MiB", chunk_bytes / MIB, note="stored bytes of its chunks + index"
    )
    zfig = figure_from(
        "zarr3 + obstore", "baseline", got["zarr3 + obstore"], unit="MiB", value=lambda x: x.value or 0.0
    )
    zfig.note = "bytes fetched, same proxy"
    if mikro.value is None:
        check = Check("≤ 1.1", None, "missing figure")
    else:
        r = mikro.value / base.value if base.value else float("inf")
        check = Check("≤ 1.1", r <= 1.1, f"{r:.2f}x the plane's chunk bytes (≤ 1.1)")
    return BarResult(
        "zplane",
        "one z-plane of a 64-plane image",
        f"{s.zplane_planes}x{s.zplane_side}x{s.zplane_side} uint16, mikro's default codec and layout "
        f"({_mikro.layout_text(meta)}); plane z={z}; bytes counted at a TCP proxy in front of moto",
        "fetched ≤ 1.1x the plane's chunk bytes",
        [mikro, base, zfig],
        [check],
    )


# --- loop responsiveness -------------------------------------------------------------------------


def bar_loop_lag(ctx: Context) -> BarResult:
    img = read_image(ctx)
    got = interleave(
        {
            "mikro on asyncio": lambda: _mikro.loop_lag(ctx, img, "asyncio"),
            "mikro on trio": lambda: _mikro.loop_lag(ctx, img, "trio"),
            "mikro on asyncio, fresh process": lambda: _mikro.loop_lag_fresh(ctx, img, "asyncio"),
            "mikro on trio, fresh process": lambda: _mikro.loop_lag_fresh(ctx, img, "trio"),
        },
        ctx.runs,
        log=ctx.log,
    )
    figs = []
    checks = []
    for name, samples in got.items():
        fig = figure_from(name, "mikro", samples, unit="ms", value=lambda x: x.value or 0.0)
        if not isinstance(samples, str) and samples:
            fig.note = f"worst run {max(s.value or 0.0 for s in samples):.1f} ms"
        figs.append(fig)
        if fig.value is None:
            checks.append(Check(f"{name} ≤ 20 ms", None, "missing figure"))
        else:
            checks.append(
                Check(
                    f"{name} ≤ 20 ms",
                    fig.value <= 20.0,
                    f"{name.removeprefix('mikro on ')}: {fig.value:.1f} ms (≤ 20)",
                )
            )
    return BarResult(
        "loop_lag",
        "loop responsiveness during full read + .max()",
        f"max lag of a 5 ms heartbeat (anyio.sleep) on the same loop during await m.compute(rep.data) then "
        f"await m.compute(rep.data.max()) of the {img.nbytes / MIB:.0f} MiB read image; 'fresh process': "
        "the same in a new interpreter (benchmarks/_lag_child.py): what mikro loads on first use of rep.data "
        "counts",
        "≤ 20 ms",
        figs,
        checks,
        ratio=False,
    )
