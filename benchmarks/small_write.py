"""Client CPU per small image of `write_small_image`, stage by stage, against the floor's raw puts (issue 16).

The small-TIFF bar is set by the client's CPU per image on the GIL (see benchmarks/ingest_files.py): this
splits `write_small_image` of 256x256 uint16 images to a folder store into its stages, each run alone over
``--images`` calls (process CPU per call), beside the floor: obstore's raw `LocalStore` puts of the same
image's pixels and two small documents (what `ingest_files.py`'s floor writes per image).

    python benchmarks/small_write.py [--images 2000] [--side 256] [--runs 3] [--quick]

Each image goes to a store folder of its own (the server makes that folder; the image's ``0/`` is new),
as in an ingest. One thread: these are CPU costs, not throughput.
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import obstore
from obstore.store import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._context import folder_store, synthetic_planes
from mikro.datalayer._layout import group_metadata, ome_attributes
from mikro.datalayer._shard import shard_payload
from mikro.datalayer._validate import PreparedImage
from mikro.datalayer._write import (
    _array_document,
    _ChannelRanges,
    _codec,
    _encode_json,
    _one_level_group_document,
    small_image_keys,
    small_layout,
    write_small_image,
)

SIDE_OBJECTS = (1_400, 1_100)
FLOOR = "floor: 3 raw obstore puts"


def images(count: int, side: int) -> list[PreparedImage]:
    # The pixels of ingest_files.py's small TIFFs (a camera-like field, rolled per file): caches must not
    # flatter a stage, and the codec's cost depends on the data.
    (base,) = synthetic_planes(1, side)
    return [PreparedImage(np.roll(base, i, axis=1), ("y", "x"), {"x": 0.5, "y": 0.5}) for i in range(count)]


def per_call(run: Callable[[int], Any], count: int) -> tuple[float, float]:
    """Process CPU per call of ``run(i)``, i in range(count), in microseconds: user and system."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(count):
        run(i)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (
        (after.ru_utime - before.ru_utime) / count * 1e6,
        (after.ru_stime - before.ru_stime) / count * 1e6,
    )


def stages(work: Path, count: int, side: int) -> dict[str, Callable[[], tuple[float, float]]]:
    imgs = images(count, side)
    layout = small_layout(imgs[0])
    assert layout is not None
    (position,) = layout.shard_positions()
    region = layout.shard_region(position)
    blocks = [np.asarray(im.array[region]) for im in imgs]
    codec = _codec(layout)
    counter = iter(range(10**9))

    def folders(tag: str) -> list[Path]:
        root = work / f"{tag}{next(counter)}"
        made = [root / str(i) for i in range(count)]
        for folder in made:
            folder.mkdir(parents=True)
        return made

    def write(thumbnail: bool) -> tuple[float, float]:
        stores = [folder_store(f) for f in folders("w")]
        for store in stores:
            store.current_grant()
        return per_call(lambda i: write_small_image(stores[i], imgs[i], layout, thumbnail=thumbnail), count)

    def put_many() -> tuple[float, float]:
        stores = [folder_store(f) for f in folders("p")]
        doc = _array_document(layout)
        shards = [shard_payload(b, layout, codec) for b in blocks]
        group = _encode_json(group_metadata(ome_attributes(layout.dims, {"x": 0.5}, levels=[(1, 1)])))
        keys = small_image_keys(layout)
        return per_call(
            lambda i: stores[i].put_new(list(zip(keys, (doc, shards[i], group), strict=True))), count
        )

    def floor() -> tuple[float, float]:
        root = work / f"f{next(counter)}"
        root.mkdir(parents=True)
        store = LocalStore(root)
        side_objects = [bytes(n) for n in SIDE_OBJECTS]

        def one(i: int) -> None:
            obstore.put(store, f"{i}/0/c.0.0", memoryview(blocks[i]).cast("B"), use_multipart=False)
            obstore.put(store, f"{i}/zarr.json", side_objects[0], use_multipart=False)
            obstore.put(store, f"{i}/0/zarr.json", side_objects[1], use_multipart=False)

        return per_call(one, count)

    def ranges(i: int) -> Any:
        found = _ChannelRanges(layout)
        found.add(blocks[i], region)
        return found.channels(None)

    def documents(i: int) -> bytes:
        return _one_level_group_document(layout.dims, imgs[i].pixel_size, f"f{i:05d}.tif", ranges(i), False)

    return {
        "write_small_image, thumbnail": lambda: write(True),
        "write_small_image, no thumbnail": lambda: write(False),
        "  slice the block": lambda: per_call(lambda i: np.asarray(imgs[i].array[region]), count),
        "  channel ranges": lambda: per_call(ranges, count),
        "  shard_payload": lambda: per_call(lambda i: shard_payload(blocks[i], layout, codec), count),
        "  array document (cached)": lambda: per_call(lambda i: _array_document(layout), count),
        "  channel ranges + group document": lambda: per_call(documents, count),
        "  small_image_keys": lambda: per_call(lambda i: small_image_keys(layout), count),
        "  put_new (the 3 objects)": put_many,
        FLOOR: floor,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 images, one run")
    parser.add_argument("--only", default="", help="only the stages whose name contains this")
    args = parser.parse_args(argv)
    count, runs = (200, 1) if args.quick else (args.images, args.runs)
    work = Path(tempfile.mkdtemp(prefix="small_write"))
    try:
        chosen = [name for name in stages(work / "names", 1, args.side) if args.only in name or name == FLOOR]
        warm_up = stages(work / "warm-up", 20, args.side)
        for name in chosen:
            warm_up[name]()  # imports, caches, the codec's first call
        every = stages(work, count, args.side)
        table = {name: every[name] for name in chosen}
        got: dict[str, list[tuple[float, float]]] = {name: [] for name in table}
        names = list(table)
        with ThreadPoolExecutor(1) as thread:
            for r in range(runs):
                # Stages alternate run by run, in a rotating order (the file system's cost of creating
                # inodes varies with what was just deleted); in a worker thread, as the ingest writes.
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    got[name].append(thread.submit(table[name]).result())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(name: str, part: int | None) -> float:
        return statistics.median(sum(v) if part is None else v[part] for v in got[name])

    floor = median(FLOOR, None)
    print(f"{count} images of {args.side}x{args.side} uint16, folder store, {runs} run(s), medians")
    print(
        "CPU per image in microseconds; 'user': the Python of it holds the GIL (which sets images/s), the "
        "codec does not; 'system': the file system's (creating inodes), noisy on a shared machine"
    )
    print(f"{'stage':36} {'user':>8} {'system':>8} {'total':>8} {'total x floor':>14}")
    for name in got:
        user, system, total = median(name, 0), median(name, 1), median(name, None)
        ratio = total / floor if floor else math.nan
        print(f"{name:36} {user:8.1f} {system:8.1f} {total:8.1f} {ratio:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
