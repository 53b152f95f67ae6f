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

Also registered in ``benchmarks/run.py``. Throughput is of the image's bytes for every contender; CPU is
this process's (the folder store has no server in the read path).
"""

from __future__ import annotations

import contextlib
import json
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _mikro
import numpy as np
import obstore
from _context import Context
from _harness import MIB, BarResult, Check, Figure, Sample, cpu_by_run, figure_from, interleave, timed
from obstore.store import LocalStore

__all__ = ["BARS", "bar_read_folder", "bar_read_folder_compressed"]

#: Threads of every floor: as many as mikro's whole-image read uses (mikro.datalayer._read).
FLOOR_THREADS = 4
TARGET = 0.85


def _image(ctx: Context, compressed: bool) -> _mikro.StoredImage:
    s = ctx.sizes
    planes = ("read", s.read_planes, s.read_side)
    return _mikro.uploaded_once(ctx, f"read_folder_{compressed}", "local", planes, compressed=compressed)


def _shard_files(img: _mikro.StoredImage) -> list[Path]:
    return sorted(p for p in (Path(img.path) / img.array / "c").rglob("*") if p.is_file())


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


def _each(files: Sequence[Path], fn: Callable[[Path], None]) -> None:
    with ThreadPoolExecutor(FLOOR_THREADS) as pool:
        list(pool.map(fn, files))


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


def _readinto_place(files: Sequence[Path], warm: _Warm, meta: dict[str, Any], image: np.ndarray) -> None:
    """Every file read whole as `_readinto` does, then every chunk decoded (numcodecs, the codec mikro
    uses; raw chunks as they are) into a warm chunk buffer and copied (numpy) to its place in ``image``."""
    from numcodecs import Blosc, Zstd

    conf = meta["codecs"][0]["configuration"]
    names = [c["name"] for c in conf["codecs"]]
    codec = Blosc() if "blosc" in names else Zstd() if "zstd" in names else None
    shards = meta["chunk_grid"]["configuration"]["chunk_shape"]
    inner = tuple(conf["chunk_shape"])
    per = tuple(o // i for o, i in zip(shards, inner, strict=True))
    index_bytes = int(np.prod(per)) * 16 + 4
    dtype = np.dtype(meta["data_type"])
    scratch = queue.SimpleQueue[np.ndarray]()
    for _ in range(FLOOR_THREADS):
        scratch.put(np.ones(inner, dtype=dtype))

    def one(path: Path) -> None:
        shard = [int(p) for p in path.relative_to(path.parents[len(shards) - 1]).parts]
        with warm.get() as buf, open(path, "rb", buffering=0) as f:
            n = f.readinto(memoryview(buf)[: buf.nbytes])
            index = np.frombuffer(buf[n - index_bytes : n - 4], dtype="<u8").reshape(-1, 2)
            chunk = scratch.get()
            for flat, (offset, length) in enumerate(index.tolist()):
                data = buf[offset : offset + length]
                if codec is None:
                    chunk.reshape(-1).view(np.uint8)[:] = data
                else:
                    codec.decode(data, out=chunk)
                local = np.unravel_index(flat, per)
                at = [s * n + c * i for s, n, c, i in zip(shard, shards, local, inner, strict=True)]
                place = tuple(slice(a, min(a + i, e)) for a, i, e in zip(at, inner, image.shape, strict=True))
                image[place] = chunk[tuple(slice(0, p.stop - p.start) for p in place)]
            scratch.put(chunk)

    _each(files, one)


def _run(fn: Callable[[], None], nbytes: int) -> Sample:
    with timed() as clock:
        fn()
    return Sample(clock.seconds, clock.cpu, nbytes)


def _bar(ctx: Context, compressed: bool) -> BarResult:
    img = _image(ctx, compressed)
    files = _shard_files(img)
    stored = sum(p.stat().st_size for p in files)
    meta = json.loads((Path(img.path) / img.array / "zarr.json").read_text())
    warm = _Warm(max(p.stat().st_size for p in files))
    floor = "readinto shard files whole"
    contenders: dict[str, Callable[[], Sample]] = {
        "mikro": lambda: _mikro.read_full(ctx, img),
        floor: lambda: _run(lambda: _readinto(files, warm), img.nbytes),
        "obstore LocalStore get().bytes()": lambda: _run(lambda: _get_bytes(img.bucket, files), img.nbytes),
    }
    image = np.ones(img.nbytes, dtype=np.uint8).view(meta["data_type"]).reshape(meta["shape"])
    placed = "readinto + decode into the image" if compressed else "readinto + place into the image"
    contenders[placed] = lambda: _run(lambda: _readinto_place(files, warm, meta, image), img.nbytes)
    got = interleave(contenders, ctx.runs, log=ctx.log)
    figs = [figure_from(n, "mikro" if n == "mikro" else "baseline", got[n]) for n in contenders]
    mikro, base = figs[0], figs[1]
    base.note = f"the target's floor: {FLOOR_THREADS} threads, one warm buffer each"
    figs[2].note = "a fresh buffer per file"
    mikro.note = cpu_by_run(got["mikro"]) or mikro.note
    floor_placed = figs[3]
    floor_placed.note = (
        "what any reader whose result is the image does on top of the target's floor: each chunk "
        + ("decoded (numcodecs) and " if compressed else "")
        + "copied to its place (its rows lie apart) in an image array already in memory"
    )
    if floor_placed.value and base.value:
        floor_placed.note += f"; itself {floor_placed.value / base.value:.2f}x the target's floor"
    checks = [_ratio(mikro, base, TARGET), _ratio(mikro, floor_placed, TARGET)]
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
