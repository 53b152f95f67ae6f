"""Full read of one image from a folder store (issue 17), beside reading the same shard files whole.

    python benchmarks/read_folder.py [--quick] [--runs 3] [--only read_folder,read_folder_compressed]

- ``read_folder``: a 32x2048x2048 uint16 image (256 MiB; 4x512x512 with --quick) stored by mikro without
  compression in a folder store, read by ``await m.compute(rep.data)``;
- ``read_folder_compressed``: the same image with mikro's default codec (blosc-lz4, byte shuffle).

The floors, in the same run and process, with as many threads as mikro reads with: every shard file read
whole with ``readinto`` into memory that is already there (one warm buffer per thread: the least any
reader can do; the target's floor), and obstore ``LocalStore`` ``get().bytes()`` of every file. Beside
them "readinto + place/decode into the image": the files read as above, then every chunk (decoded by
numcodecs, the codec mikro uses, when compressed) copied to its place in an image array already in
memory: what any reader whose result is the image does, and the target's floor does not (a chunk's rows
lie apart in the image; decoding costs several times the read).

And the floors that bound any reader whose result is the image, to judge the target by: uncompressed,
"preadv each chunk's rows into the image" (every chunk read by the kernel straight into its place, one
``os.preadv`` per chunk with a buffer per row: one copy, as reading whole files does, but a chunk's rows
lie apart in the image, so the kernel copies 2 KiB runs, not whole files); compressed, "decode every
chunk, all cores" (each chunk decoded into warm memory and dropped: the decoder alone). When such a
floor is itself below 0.85x the target's floor, the target cannot be met by any reader of the image.

Every contender's figure in a run is the median of `REPEATS` repetitions (a read takes 25-200 ms, and
single runs varied by 2x on a busy machine).

Also registered in ``benchmarks/run.py``. Throughput is of the image's bytes for every contender; CPU is
this process's (the folder store has no server in the read path).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
from obstore.store import LocalStore

__all__ = ["BARS", "bar_read_folder", "bar_read_folder_compressed"]

T = TypeVar("T")
#: Threads of every floor: as many as mikro's whole-image read uses (mikro.datalayer._read).
FLOOR_THREADS = 4
TARGET = 0.85
#: Repetitions of each contender inside one run (the run's figure is their median).
REPEATS = 5


def _image(ctx: Context, compressed: bool) -> _mikro.StoredImage:
    s = ctx.sizes
    planes = ("read", s.read_planes, s.read_side)
    return _mikro.uploaded_once(ctx, f"read_folder_{compressed}", "local", planes, compressed=compressed)


def _shard_files(img: _mikro.StoredImage) -> list[Path]:
    # mikro names shards with '.' (``c.0.0.0``): one file per shard beside the array's zarr.json.
    return sorted(p for p in (Path(img.path) / img.array).iterdir() if p.name.startswith("c."))


class _Warm:
    """One buffer per thread, all written before any timing: memory that is already there."""

    def __init__(self, nbytes: int) -> None:
        self._free = queue.SimpleQueue[np.ndarray]()
        for _ in range(FLOOR_THREADS):
            self._free.put(np.ones(nbytes, dtype=np.uint8))

    @contextlib.contextmanager
    def get(self) -> Iterator[np.ndarray]:
        buf = self._free.get()
        try:
            yield buf
        finally:
            self._free.put(buf)


def _each(items: Sequence[T], fn: Callable[[T], None]) -> None:
    with ThreadPoolExecutor(FLOOR_THREADS) as pool:
        list(pool.map(fn, items))


def _readinto(files: Sequence[Path], warm: _Warm) -> None:
    def one(path: Path) -> None:
        with warm.get() as buf, open(path, "rb", buffering=0) as f:
            n = f.readinto(memoryview(buf)[: buf.nbytes])
        assert n == path.stat().st_size

    _each(files, one)


def _get_bytes(root: str, files: Sequence[Path]) -> None:
    store = LocalStore(root)
    keys = [str(p.relative_to(root)) for p in files]
    with ThreadPoolExecutor(FLOOR_THREADS) as pool:
        list(pool.map(lambda k: obstore.get(store, k).bytes(), keys))


class _Layout:
    """Where each stored chunk is: its shard file, offset and length, and its place in the image."""

    def __init__(self, files: Sequence[Path], meta: dict[str, Any]) -> None:
        conf = meta["codecs"][0]["configuration"]
        names = [c["name"] for c in conf["codecs"]]
        from numcodecs import Blosc, Zstd

        self.codec: Any = Blosc() if "blosc" in names else Zstd() if "zstd" in names else None
        shards = meta["chunk_grid"]["configuration"]["chunk_shape"]
        self.inner = tuple(conf["chunk_shape"])
        per = tuple(o // i for o, i in zip(shards, self.inner, strict=True))
        index_bytes = int(np.prod(per)) * 16 + 4
        self.dtype = np.dtype(meta["data_type"])
        self.shape = tuple(meta["shape"])
        #: per file: (path, [(offset, length, place in the image), ...])
        self.files: list[tuple[Path, list[tuple[int, int, tuple[slice, ...]]]]] = []
        for path in files:
            shard = [int(p) for p in path.name.split(".")[1:]]
            with open(path, "rb") as f:
                f.seek(-index_bytes, 2)
                index = np.frombuffer(f.read(index_bytes)[:-4], dtype="<u8").reshape(-1, 2)
            chunks = []
            for flat, (offset, length) in enumerate(index.tolist()):
                local = np.unravel_index(flat, per)
                at = [s * n + c * i for s, n, c, i in zip(shard, shards, local, self.inner, strict=True)]
                place = tuple(
                    slice(a, min(a + i, e)) for a, i, e in zip(at, self.inner, self.shape, strict=True)
                )
                chunks.append((offset, length, place))
            self.files.append((path, chunks))


def _readinto_place(layout: _Layout, warm: _Warm, image: np.ndarray) -> None:
    """Every file read whole as `_readinto` does, then every chunk decoded (numcodecs, the codec mikro
    uses; raw chunks as they are) into a warm chunk buffer and copied (numpy) to its place in ``image``."""
    scratch = queue.SimpleQueue[np.ndarray]()
    for _ in range(FLOOR_THREADS):
        scratch.put(np.ones(layout.inner, dtype=layout.dtype))

    def one(item: tuple[Path, list[tuple[int, int, tuple[slice, ...]]]]) -> None:
        path, chunks = item
        with warm.get() as buf, open(path, "rb", buffering=0) as f:
            f.readinto(memoryview(buf)[: buf.nbytes])
            chunk = scratch.get()
            for offset, length, place in chunks:
                data = buf[offset : offset + length]
                if layout.codec is None:
                    chunk.reshape(-1).view(np.uint8)[:] = data
                else:
                    layout.codec.decode(data, out=chunk)
                image[place] = chunk[tuple(slice(0, p.stop - p.start) for p in place)]
            scratch.put(chunk)

    _each(layout.files, one)


def _row_views(layout: _Layout, image: np.ndarray) -> list[tuple[Path, list[tuple[int, list[memoryview]]]]]:
    """For each file, each raw chunk's offset and its rows' places in ``image`` as byte views."""
    out = []
    for path, chunks in layout.files:
        views = []
        for offset, length, place in chunks:
            target = image[place]
            if target.nbytes != length:
                raise ValueError("a partial edge chunk: this floor needs images of whole chunks")
            rows = target.reshape(-1, target.shape[-1])
            views.append((offset, [memoryview(r).cast("B") for r in rows]))
        out.append((path, views))
    return out


def _preadv_rows(plan: list[tuple[Path, list[tuple[int, list[memoryview]]]]]) -> None:
    """Each raw chunk read by the kernel straight into its rows of the image (one ``preadv`` per chunk,
    split at the 1024 buffers Linux takes at once)."""

    def one(item: tuple[Path, list[tuple[int, list[memoryview]]]]) -> None:
        path, chunks = item
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset, rows in chunks:
                at = offset
                for i in range(0, len(rows), 1024):
                    at += os.preadv(fd, rows[i : i + 1024], at)
        finally:
            os.close(fd)

    _each(plan, one)


def _decode_only(layout: _Layout, blobs: list[list[bytes]]) -> None:
    """Every compressed chunk (already in memory) decoded into a warm per-thread chunk buffer."""
    scratch = queue.SimpleQueue[np.ndarray]()
    for _ in range(FLOOR_THREADS):
        scratch.put(np.ones(layout.inner, dtype=layout.dtype))

    def one(chunks: list[bytes]) -> None:
        chunk = scratch.get()
        for data in chunks:
            layout.codec.decode(data, out=chunk)
        scratch.put(chunk)

    _each(blobs, one)


def _run(fn: Callable[[], None], nbytes: int) -> Sample:
    samples = []
    for _ in range(REPEATS):
        with timed() as clock:
            fn()
        samples.append(Sample(clock.seconds, clock.cpu, nbytes))
    return median_sample(samples)


def _bar(ctx: Context, compressed: bool) -> BarResult:
    img = _image(ctx, compressed)
    files = _shard_files(img)
    stored = sum(p.stat().st_size for p in files)
    meta = json.loads((Path(img.path) / img.array / "zarr.json").read_text())
    layout = _Layout(files, meta)
    warm = _Warm(max(p.stat().st_size for p in files))
    floor = "readinto shard files whole"
    contenders: dict[str, Callable[[], Sample]] = {
        "mikro": lambda: _mikro.read_full(ctx, img, repeats=REPEATS),
        floor: lambda: _run(lambda: _readinto(files, warm), img.nbytes),
        "obstore LocalStore get().bytes()": lambda: _run(lambda: _get_bytes(img.bucket, files), img.nbytes),
    }
    image = np.ones(img.nbytes, dtype=np.uint8).view(meta["data_type"]).reshape(meta["shape"])
    placed = "readinto + decode into the image" if compressed else "readinto + place into the image"
    contenders[placed] = lambda: _run(lambda: _readinto_place(layout, warm, image), img.nbytes)
    if compressed:
        bound = "decode every chunk, all cores"
        blobs = [[p.read_bytes()[o : o + n] for o, n, _ in chunks] for p, chunks in layout.files]
        contenders[bound] = lambda: _run(lambda: _decode_only(layout, blobs), img.nbytes)
    else:
        bound = "preadv each chunk's rows into the image"
        plan: list[Any] = []  # made on the first run, so that an image it cannot read fails only this floor

        def preadv_rows() -> Sample:
            plan[:] = plan or _row_views(layout, image)
            return _run(lambda: _preadv_rows(plan), img.nbytes)

        contenders[bound] = preadv_rows
    got = interleave(contenders, ctx.runs, log=ctx.log)
    figs = [figure_from(n, "mikro" if n == "mikro" else "baseline", got[n]) for n in contenders]
    mikro, base, obstore_get, floor_placed, least = figs
    base.note = f"the target's floor: {FLOOR_THREADS} threads, one warm buffer each"
    obstore_get.note = "a fresh buffer per file"
    mikro.note = repeated_note(got["mikro"], REPEATS)
    floor_placed.note = (
        "what any reader whose result is the image does on top of the target's floor: each chunk "
        + ("decoded (numcodecs) and " if compressed else "")
        + "copied to its place (its rows lie apart) in an image array already in memory"
    )
    least.note = (
        f"the decoder alone (numcodecs, {FLOOR_THREADS} threads on {os.cpu_count()} cores): every "
        "compressed chunk, already in memory, decoded into warm memory and dropped"
        if compressed
        else "the least a reader whose result is the image can do: one copy, by the kernel, "
        "straight into the image; a chunk's rows lie apart there, so it copies 2 KiB runs"
    )
    for fig in (floor_placed, least):
        if fig.value and base.value:
            fig.note += f"; itself {fig.value / base.value:.2f}x the target's floor"
    if least.value and base.value and least.value / base.value < TARGET:
        least.note += f", below {TARGET}x: no reader of the image can meet the target"
    checks = [_ratio(mikro, base, TARGET), _ratio(mikro, floor_placed, TARGET), _ratio(mikro, least, TARGET)]
    s = ctx.sizes
    codec = _mikro.layout_text(meta) if compressed else "no compression"
    return BarResult(
        "read_folder_compressed" if compressed else "read_folder",
        f"full read of one image from a folder store, {'compressed' if compressed else 'uncompressed'}",
        f"one {s.read_planes}x{s.read_side}x{s.read_side} uint16 image ({img.nbytes / MIB:.0f} MiB) "
        f"written by mikro to a folder store ({codec}; {len(files)} shard files, {stored / MIB:.0f} MiB "
        "stored); mikro: await m.compute(rep.data); MiB/s of the image's bytes for every contender",
        f"≥ {TARGET}x reading the shard files whole",
        figs,
        checks,
    )


def _ratio(mikro: Figure, base: Figure, bound: float) -> Check:
    if mikro.value is None or not base.value:
        return Check(f"≥ {bound}x {base.contender}", None, "missing figure")
    r = mikro.value / base.value
    return Check(f"≥ {bound}x {base.contender}", r >= bound, f"{r:.2f}x {base.contender} (≥ {bound})")


def bar_read_folder(ctx: Context) -> BarResult:
    return _bar(ctx, compressed=False)


def bar_read_folder_compressed(ctx: Context) -> BarResult:
    return _bar(ctx, compressed=True)


BARS: dict[str, Callable[[Context], BarResult]] = {
    "read_folder": bar_read_folder,
    "read_folder_compressed": bar_read_folder_compressed,
}


if __name__ == "__main__":
    import run

    run.main_of(BARS)
