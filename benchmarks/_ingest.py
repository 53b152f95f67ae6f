"""Ingest bars: many 2-D images to S3 (uncompressed, default codec) and to a local folder."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _baselines as bl
import _mikro
import numpy as np
from _context import Context
from _harness import MIB, BarResult, Check, Figure, Sample, figure_from, interleave, timed

__all__ = ["bar_ingest_codec", "bar_ingest_local", "bar_ingest_s3", "settled"]

_seq = itertools.count()

#: Pause before every contender's run. On this VM (virtio-balloon with free page reporting) memory
#: freed by the previous run's cleanup is handed back to the hypervisor about 2 s later; whoever writes
#: first after a cleanup gets still-backed pages and writes a folder store at ~3-5 GiB/s, whoever comes
#: later faults fresh pages in from the host at ~100-250 MiB/s and 5-10 CPU s/GiB (perf: the kernel's
#: `copy_folio_from_iter_atomic` filling the page cache). The same raw put measured 82 to 3,546 MiB/s
#: depending only on that. Pausing puts every contender in the same state: freed memory returned.
SETTLE_SECONDS = 4.0


def settled(contenders: dict[str, Callable[[], Sample]]) -> dict[str, Callable[[], Sample]]:
    def wrap(fn: Callable[[], Sample]) -> Callable[[], Sample]:
        def run() -> Sample:
            time.sleep(SETTLE_SECONDS)
            return fn()

        return run

    return {name: wrap(fn) for name, fn in contenders.items()}


def _tag() -> str:
    return f"run{next(_seq)}"


def _ratio_check(text: str, mikro: Figure | None, base: Figure | None, bound: float) -> Check:
    if mikro is None or base is None or mikro.value is None or not base.value:
        return Check(text, None, "missing figure")
    r = mikro.value / base.value
    return Check(text, r >= bound, f"{r:.2f}x {base.contender} (≥ {bound})")


def _cpu_check(text: str, mikro: Figure | None, bound: float) -> Check:
    if mikro is None or mikro.cpu_s_per_gib is None:
        return Check(text, None, "missing figure")
    return Check(text, mikro.cpu_s_per_gib <= bound, f"{mikro.cpu_s_per_gib:.2f} CPU s/GiB (≤ {bound})")


def _planes(ctx: Context) -> np.ndarray:
    s = ctx.sizes
    return ctx.planes("ingest", s.ingest_images, s.ingest_side)


def _server_note(fig: Figure) -> None:
    if fig.extra.get("server_cpu_s_per_gib") is not None:
        fig.note = (
            fig.note + "; " if fig.note else ""
        ) + f"server CPU {fig.extra['server_cpu_s_per_gib']:.2f} s/GiB"


def _moto_note(fig: Figure) -> None:
    """moto's CPU and every process's together: on two shared cores, the bar is bounded by their sum."""
    moto = fig.extra.get("moto_cpu_s_per_gib")
    if moto is None or fig.cpu_s_per_gib is None:
        return
    total = fig.cpu_s_per_gib + moto + (fig.extra.get("server_cpu_s_per_gib") or 0.0)
    fig.note = (fig.note + "; " if fig.note else "") + f"moto CPU {moto:.2f} s/GiB; all processes {total:.2f}"


def _raw_note(name: str, s3: bool = True) -> str:
    signing = "; unsigned bodies, as mikro's" if s3 else ""
    if "signed bodies" in name:
        return "what a default S3Store sends: a SHA-256 of each body in the signature"
    if "small objects" in name:
        return "the floor for one OME-Zarr image per plane" + signing
    return "the limit" + signing if "raw" in name else ""


def _setup_text(ctx: Context, where: str, codec: str) -> str:
    s = ctx.sizes
    return (
        f"{s.ingest_images} images of {s.ingest_side}x{s.ingest_side} uint16 "
        f"({s.ingest_bytes / MIB:.0f} MiB) to {where}, {codec}; "
        f"mikro: create_representation per image (pyramid=None, like the others), "
        f"{s.ingest_concurrency} in flight; "
        f"raw: one object per image, {bl.RAW_THREADS} threads; zarr/tensorstore: one "
        f"{s.ingest_images}-plane array with 1-plane chunks; each run starts {SETTLE_SECONDS:.0f} s after "
        "the previous one's cleanup (freed memory back with the hypervisor for every contender alike)"
    )


def bar_ingest_s3(ctx: Context) -> BarResult:
    planes = _planes(ctx)
    nbytes = planes.nbytes
    bucket = ctx.bucket("bench-ingest")
    store = bl.s3_store(ctx.moto, bucket)
    # The limit is the cheapest raw put: bodies unsigned, as mikro's client sends them (signing costs
    # a SHA-256 pass, ~0.6 CPU s/GiB, and would flatter mikro beside it).
    raw_store = bl.s3_store(ctx.moto, bucket, unsigned_payload=True)
    layout = bl.Layout.uncompressed(planes.shape[1:])

    moto = ctx.moto

    def baseline(body):  # type: ignore[no-untyped-def]
        def run() -> Sample:
            prefix = _tag()
            store0 = moto.cpu_seconds()
            with timed() as clock:
                body(prefix)
            store_cpu = moto.cpu_seconds() - store0
            bl.wipe(store, prefix)
            return Sample(clock.seconds, clock.cpu, nbytes, extra={"moto_cpu_s_per_gib": store_cpu / gib})

        return run

    gib = nbytes / 2**30
    contenders = {
        "mikro": lambda: _mikro.ingest(ctx, "s3", planes, compressed=False),
        "raw obstore put": baseline(lambda p: bl.raw_put(raw_store, p, planes)),
        "raw put, + each image's small objects": baseline(
            lambda p: bl.raw_put_image_objects(raw_store, p, planes)
        ),
        "raw put, signed bodies (obstore's default)": baseline(lambda p: bl.raw_put(store, p, planes)),
        "tensorstore zarr3": baseline(lambda p: bl.ts_write(ctx.moto, bucket, p, planes, layout)),
        "zarr3 + obstore": baseline(lambda p: bl.zarr_obstore_write(store, p, planes, layout)),
        "zarr v2 + s3fs (upstream 0.3)": baseline(lambda p: bl.zarr2_s3fs_write(ctx.moto, bucket, p, planes)),
    }
    got = interleave(settled(contenders), ctx.runs, log=ctx.log)
    figs = [
        figure_from(
            name,
            "mikro" if name == "mikro" else "baseline",
            got[name],
            note=_raw_note(name),
        )
        for name in contenders
    ]
    _server_note(figs[0])
    for fig in figs:
        _moto_note(fig)
    # The floor for this data model (issue 17): each image is its own OME-Zarr store, so its small
    # metadata objects are part of the least any client must write.
    mikro, floor = figs[0], figs[2]
    return BarResult(
        "ingest_s3",
        "ingest to S3, no compression",
        _setup_text(ctx, "S3 (moto, separate process)", "no compression"),
        "≥ 0.85x floor (raw put + each image's small objects); CPU ≤ 2.0 s/GiB",
        figs,
        [
            _ratio_check("≥ 0.85x floor", mikro, floor, 0.85),
            _cpu_check("CPU ≤ 2.0 s/GiB", mikro, 2.0),
        ],
    )


def bar_ingest_codec(ctx: Context) -> BarResult:
    planes = _planes(ctx)
    nbytes = planes.nbytes
    bucket = ctx.bucket("bench-ingest")
    store = bl.s3_store(ctx.moto, bucket)
    layout_box: list[bl.Layout] = []

    def mikro_run() -> Sample:
        sample = _mikro.ingest(ctx, "s3", planes, compressed=True, want_layout=True)
        if not layout_box and "zarr_json" in sample.extra:
            layout_box.append(bl.Layout.from_zarr_json(sample.extra.pop("zarr_json")))
        sample.extra.pop("zarr_json", None)
        return sample

    def zarr_run() -> Sample:
        layout = layout_box[0] if layout_box else _mikro.STAND_IN_LAYOUT
        prefix = _tag()
        with timed() as clock:
            bl.zarr_obstore_write(store, prefix, planes, layout)
        stored, _ = bl.stored_bytes(store, prefix)
        bl.wipe(store, prefix)
        return Sample(clock.seconds, clock.cpu, nbytes, extra={"compression_ratio": nbytes / stored})

    got = interleave(settled({"mikro": mikro_run, "zarr3 + obstore": zarr_run}), ctx.runs, log=ctx.log)
    layout = layout_box[0] if layout_box else _mikro.STAND_IN_LAYOUT
    figs = []
    for name, role in (("mikro", "mikro"), ("zarr3 + obstore", "baseline")):
        fig = figure_from(name, role, got[name])  # type: ignore[arg-type]
        if "compression_ratio" in fig.extra:
            fig.note = f"compression {fig.extra['compression_ratio']:.2f}x"
        if role == "mikro":
            _server_note(fig)
        figs.append(fig)
    mikro, base = figs
    return BarResult(
        "ingest_codec",
        "ingest to S3, mikro's default codec",
        _setup_text(ctx, "S3 (moto)", "layout " + layout.describe())
        + ("" if layout_box else " (stand-in layout: mikro wrote nothing)"),
        "≥ 1.2x zarr3+obstore",
        figs,
        [_ratio_check("≥ 1.2x zarr3+obstore", mikro, base, 1.2)],
    )


def bar_ingest_local(ctx: Context) -> BarResult:
    planes = _planes(ctx)
    nbytes = planes.nbytes

    def baseline(body):  # type: ignore[no-untyped-def]
        def run() -> Sample:
            root = Path(tempfile.mkdtemp(prefix="local-", dir=ctx.workdir))
            with timed() as clock:
                body(root)
            bl.rmtree(root)
            return Sample(clock.seconds, clock.cpu, nbytes)

        return run

    contenders = {
        "mikro": lambda: _mikro.ingest(ctx, "local", planes, compressed=False),
        "raw obstore LocalStore put": baseline(lambda root: bl.local_raw_put(root, "raw", planes)),
        "raw put, + each image's small objects": baseline(
            lambda root: bl.raw_put_image_objects(bl.LocalStore(root, mkdir=True), "raw", planes)
        ),
        "zarr3 LocalStore": baseline(lambda root: bl.local_zarr_write(root, "z", planes)),
    }
    got = interleave(settled(contenders), ctx.runs, log=ctx.log)
    figs = [
        figure_from(
            name,
            "mikro" if name == "mikro" else "baseline",
            got[name],
            note=_raw_note(name, s3=False),
        )
        for name in contenders
    ]
    _server_note(figs[0])
    return BarResult(
        "ingest_local",
        "ingest to a local folder, no compression",
        _setup_text(ctx, f"a local folder ({ctx.workdir})", "no compression"),
        "≥ 0.5x floor (raw put + each image's small objects)",
        figs,
        [_ratio_check("≥ 0.5x floor", figs[0], figs[2], 0.5)],
    )
