"""Write a validated image to a granted store as OME-Zarr 0.5: shards in worker threads, with its
metadata and (for large images) its pyramid; and make its thumbnail.

Shards are encoded here (see `_shard`) and put whole with obstore's sync API, several at once: each
shard is encoded in one ``anyio.to_thread.run_sync`` call and put in another, under the caller's
`CapacityLimiter`, and no more shards are scheduled than the limiter has tokens, so memory stays bounded
(dask inputs are computed one shard region at a time, never as a whole). The metadata documents go up
beside the first shard: nothing reads the store before the server records it, so an image is complete
when it is registered, not when its ``zarr.json`` appears. The group's ``zarr.json`` goes up once every
block has been read: its ``omero`` block carries each channel's data range. Coarser levels are built
from the same blocks as they are read (see `_pyramid`) and written beside level 0. The thumbnail (a
PNG of the coarsest level, not stored here: it is sent with the image's registration) is made as soon as
every block has been read, beside the last shards' uploads; that of an image of one shard is made by the
server when first read (see `write_small_image`). On failure or cancellation the objects
already written are deleted (best effort) and the error propagates; nothing is registered with the
server here. An image of one shard and no coarser level (a plate's field, a 2048x2048 plane) is written
whole in one worker-thread call instead (`write_small_image`): the hops cost more than they overlap.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from json.encoder import encode_basestring_ascii
from typing import Any

import anyio
import anyio.abc
import numpy as np

from mikro.datalayer._gc import full_collections_deferred
from mikro.datalayer._layout import (
    CHANNEL_COLOURS,
    DEFAULT_COMPRESSION,
    SINGLE_CHANNEL_COLOUR,
    TARGET_SHARD_BYTES,
    ChannelInfo,
    Compression,
    ImageLayout,
    choose_layout,
    group_metadata,
    ome_attributes,
    omero_block,
    omero_colour,
)
from mikro.datalayer._pyramid import Method, PyramidBuilder, PyramidOption, plan_levels
from mikro.datalayer._result_memory import result_array
from mikro.datalayer._shard import ChunkCodec, ShardPayload, shard_payload
from mikro.datalayer._store import GrantedStore
from mikro.datalayer._thumbnail import (
    THUMBNAIL_OBJECT,
    MaxProjection,
    Thumbnail,
    make_thumbnail,
    small_image_thumbnail,
)
from mikro.datalayer._validate import PreparedImage

__all__ = [
    "ProgressCallback",
    "WriteResult",
    "plan_image",
    "small_image_keys",
    "small_layout",
    "write_image",
    "write_small_image",
]

log = logging.getLogger(__name__)

#: ``progress(bytes_done, bytes_total)`` in uncompressed bytes, called on the event loop after each shard.
ProgressCallback = Callable[[int, int], None]

CLEANUP_SECONDS = 10.0
#: Images up to this size (one shard, no pyramid) are those `small_layout` offers a batch to write whole in
#: its worker threads; `write_image` writes every one-shard image without coarser levels in one hop.
WHOLE_IMAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class WriteResult:
    """What was written: the layout, byte counts, wall time and a (downsampled) max projection."""

    layout: ImageLayout
    bytes_stored: int
    seconds: float
    #: None when no projection was made: an image written whole by `write_small_image` (the server makes
    #: its thumbnail from the stored pixels, see `thumbnail_of_image`).
    projection: np.ndarray[Any, Any] | None
    keys: tuple[str, ...]
    #: The array's ``zarr.json`` as written (the server records shape, dtype and chunks from it).
    array_metadata: bytes
    #: The thumbnail made with ``thumbnail=True`` (None without one); in the store only when its ``key``
    #: says where.
    thumbnail: Thumbnail | None = None
    #: Every level's layout (level 0 first) and its downsampling factors per dim relative to level 0.
    levels: tuple[ImageLayout, ...] = ()
    factors: tuple[tuple[int, ...], ...] = ()
    #: Each level's ``zarr.json`` as written (level 0's is `array_metadata`).
    level_metadata: tuple[bytes, ...] = ()

    @property
    def nbytes(self) -> int:
        return self.layout.nbytes


def _channel_index(axis: int, i: int) -> tuple[slice | int, ...]:
    return (*((slice(None),) * axis), i)


class _ChannelRanges:
    """Each channel's minimum and maximum over the blocks seen (thread-safe): the ``omero`` windows."""

    def __init__(self, layout: ImageLayout) -> None:
        self._axis = layout.dims.index("c") if "c" in layout.dims else None
        count = layout.shape[self._axis] if self._axis is not None else 1
        self.low = [math.inf] * count
        self.high = [-math.inf] * count
        self._lock = threading.Lock()

    def add(self, block: np.ndarray[Any, Any], region: Sequence[slice]) -> None:
        if self._axis is None:
            found = [(0, block)]
        else:
            first = region[self._axis].start
            # A view of each channel, not a copy.
            found = [
                (first + i, block[_channel_index(self._axis, i)]) for i in range(block.shape[self._axis])
            ]
        for channel, values in found:
            finite = values if values.dtype.kind != "f" else values[np.isfinite(values)]
            if finite.size == 0:
                continue
            low, high = float(finite.min()), float(finite.max())
            with self._lock:
                self.low[channel] = min(self.low[channel], low)
                self.high[channel] = max(self.high[channel], high)

    def channels(
        self, names: Sequence[str] | None, given_colours: Sequence[str | None] | None = None
    ) -> list[ChannelInfo]:
        count = len(self.low)
        colours = (SINGLE_CHANNEL_COLOUR,) if count == 1 else CHANNEL_COLOURS
        given = [omero_colour(c) for c in given_colours or ()]
        return [
            ChannelInfo(
                label=names[i] if names and i < len(names) and names[i] else f"Channel {i}",
                colour=(given[i] if i < len(given) else None) or colours[i % len(colours)],
                low=self.low[i] if math.isfinite(self.low[i]) else 0.0,
                high=self.high[i] if math.isfinite(self.high[i]) else 0.0,
            )
            for i in range(count)
        ]


@functools.lru_cache(maxsize=64)
def _array_document(layout: ImageLayout) -> bytes:
    """A layout's ``zarr.json``: the same for every image of one shape and dtype (a plate's fields)."""
    return _encode_json(layout.array_metadata())


def plan_image(
    image: PreparedImage,
    *,
    compression: Compression = DEFAULT_COMPRESSION,
    level: int = 1,
    target_shard_bytes: int = TARGET_SHARD_BYTES,
    pyramid: PyramidOption = None,
) -> tuple[list[ImageLayout], list[tuple[int, ...]]]:
    """Every level's layout (level 0 first) and its downsampling factors, as `write_image` writes them."""
    layouts, factors = _planned(
        tuple(image.shape),
        image.dtype,
        tuple(image.dims),
        compression,
        level,
        target_shard_bytes,
        tuple(sorted(image.pixel_size.items())),
        pyramid,
    )
    return list(layouts), list(factors)


@functools.lru_cache(maxsize=256)
def _planned(
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    dims: tuple[str, ...],
    compression: Compression,
    level: int,
    target_shard_bytes: int,
    pixel_size: tuple[tuple[str, float], ...],
    pyramid: PyramidOption,
) -> tuple[tuple[ImageLayout, ...], tuple[tuple[int, ...], ...]]:
    # The same for every image of one shape (a plate's fields): planned once, not once per image.
    base = choose_layout(
        shape, dtype, dims, compression=compression, level=level, target_shard_bytes=target_shard_bytes
    )
    layouts, factors = plan_levels(base, dict(pixel_size), pyramid, target_shard_bytes=target_shard_bytes)
    return tuple(layouts), tuple(factors)


def _is_small(layout: ImageLayout) -> bool:
    return layout.nbytes <= WHOLE_IMAGE_BYTES and math.prod(layout.shard_grid) == 1


def small_layout(
    image: PreparedImage, *, compression: Compression = DEFAULT_COMPRESSION, pyramid: PyramidOption = None
) -> ImageLayout | None:
    """The layout of an image `write_small_image` writes (one shard, no coarser level), else None."""
    layouts, _ = plan_image(image, compression=compression, pyramid=pyramid)
    return layouts[0] if len(layouts) == 1 and _is_small(layouts[0]) else None


def small_image_keys(layout: ImageLayout, *, thumbnail: bool = False) -> list[str]:
    """The objects `write_small_image` writes for ``layout`` (with ``thumbnail``, the thumbnail's too:
    it writes one to a folder store for an image too large for the server to make it)."""
    keys = _small_plan(layout)[1]
    return [*keys, THUMBNAIL_OBJECT] if thumbnail else list(keys)


@functools.lru_cache(maxsize=64)
def _small_plan(layout: ImageLayout) -> tuple[tuple[slice, ...], tuple[str, ...]]:
    """The region of a one-shard image's shard and its objects' keys: the same for every image of one
    layout (`shard_positions` walks an ``np.ndindex``: ~10 us per call)."""
    (position,) = layout.shard_positions()
    return layout.shard_region(position), (
        f"{layout.path}/zarr.json",
        layout.shard_key(position),
        "zarr.json",
    )


@functools.lru_cache(maxsize=64)
def _codec(layout: ImageLayout) -> ChunkCodec:
    return ChunkCodec.for_layout(layout)


def write_small_image(
    store: GrantedStore,
    image: PreparedImage,
    layout: ImageLayout,
    *,
    name: str | None = None,
    thumbnail: bool = False,
    channel_names: Sequence[str] | None = None,
    channel_colours: Sequence[str | None] | None = None,
    rgb: bool = False,
) -> WriteResult:
    """Write an image of one shard and no coarser level (``layout`` from `small_layout`) in this thread.

    Blocking, for a worker thread: for a small image the thread hops of `write_image`'s general path
    (one per object, the group document and the thumbnail) cost more than the work. The caller deletes
    `small_image_keys` if it fails.

    With ``thumbnail``, no PNG is made here: the result's thumbnail has only the size (`thumbnail_size`)
    and the server makes the PNG from the stored pixels when it is first read (see `_thumbnail`); it
    cost this thread ~15 % of its CPU per small image, on the client's one core that bounds an ingest.
    Only an image too large for that (`made_on_read`) gets its PNG here: written beside it on a folder
    store (its ``key`` says so), sent with the registration on S3.
    """
    started = time.perf_counter()
    region, keys = _small_plan(layout)
    block: Any = image.array[region]
    if image.is_lazy:
        block = block.compute()
    block = np.asarray(block)
    ranges = _ChannelRanges(layout)
    ranges.add(block, region)
    shard = shard_payload(block, layout, _codec(layout))
    doc = _array_document(layout)
    channels = ranges.channels(channel_names or image.channel_names, channel_colours)
    group = _one_level_group_document(layout.dims, image.pixel_size, name, channels, rgb)
    objects: list[tuple[str, bytes | memoryview | ShardPayload]] = list(
        zip(keys, (doc, shard, group), strict=True)
    )
    made = small_image_thumbnail(block) if thumbnail else None
    if made is not None and made.png is not None and store.current_grant().kind == "file":
        made.key = THUMBNAIL_OBJECT
        objects.append((THUMBNAIL_OBJECT, made.png))
    store.put_new(objects)
    return WriteResult(
        layout=layout,
        bytes_stored=len(shard),
        seconds=time.perf_counter() - started,
        projection=None,
        keys=tuple(key for key, _ in objects),
        array_metadata=doc,
        thumbnail=made,
        levels=(layout,),
        factors=((1,) * layout.ndim,),
        level_metadata=(doc,),
    )


def _computed(lazy: Any) -> np.ndarray[Any, Any]:
    """A dask region's pixels, stored into result memory (small pages, reused once dropped) rather than
    the fresh array ``compute()`` concatenates: numpy advises a shard region's 32 MiB into transparent
    huge pages, which a VM that hands free memory back to its host backs again on first touch (several
    CPU-s per GiB, see `_result_memory`)."""
    import dask.array as da

    out, _ = result_array(lazy.shape, lazy.dtype)
    # Each chunk goes to its own part of ``out``: no lock needed.
    da.store(lazy, out, lock=False)  # type: ignore[no-untyped-call]
    return out


def _encode_json(doc: dict[str, Any]) -> bytes:
    # Compact: an indent sends json to its pure-Python encoder, a third of a small image's write.
    return json.dumps(doc, separators=(",", ":")).encode()


#: A field of a document template: what `_encode_json` makes of the string ``"\0field\0"``.
_TEMPLATE_FIELD = re.compile(r'"\\u0000(\w+)\\u0000"')


def _one_level_group_document(
    dims: Sequence[str],
    pixel_size: Mapping[str, float],
    name: str | None,
    channels: Sequence[ChannelInfo],
    rgb: bool,
) -> bytes:
    """The group ``zarr.json`` of an image without coarser levels, byte for byte what `_encode_json` makes
    of its `group_metadata` (`ome_attributes` and `omero_block`), filled into a template made once per
    axes, pixel size and channel colours (a plate's fields share one): building the dicts and encoding
    them per image cost ~20 us, a tenth of a small image's CPU outside the file system and the codec."""
    parts = _one_level_group_template(
        tuple(dims), tuple(sorted(pixel_size.items())), tuple(c.colour for c in channels), rgb, bool(name)
    )
    values = {"name": encode_basestring_ascii(name) if name else ""}
    for i, channel in enumerate(channels):
        values[f"label{i}"] = encode_basestring_ascii(channel.label)
        # json writes a float as its repr (the windows are finite: `_ChannelRanges.channels`).
        values[f"low{i}"] = float.__repr__(float(channel.low))
        values[f"high{i}"] = float.__repr__(float(channel.high))
    # Even parts are the template's text, odd ones the names of the fields between them.
    return "".join([values[part] if i % 2 else part for i, part in enumerate(parts)]).encode()


@functools.lru_cache(maxsize=64)
def _one_level_group_template(
    dims: tuple[str, ...],
    pixel_size: tuple[tuple[str, float], ...],
    colours: tuple[str, ...],
    rgb: bool,
    named: bool,
) -> tuple[str, ...]:
    # Placeholders where the per-image values go (strings where floats go: replaced once encoded).
    channels = [
        ChannelInfo(label=f"\0label{i}\0", colour=colour, low=f"\0low{i}\0", high=f"\0high{i}\0")  # type: ignore[arg-type]
        for i, colour in enumerate(colours)
    ]
    ome = ome_attributes(
        dims,
        dict(pixel_size),
        name="\0name\0" if named else None,
        levels=[(1,) * len(dims)],
        omero=omero_block(channels, rgb=rgb),
    )
    return tuple(_TEMPLATE_FIELD.split(_encode_json(group_metadata(ome)).decode()))


async def write_image(
    store: GrantedStore,
    image: PreparedImage,
    *,
    name: str | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    compression: Compression = DEFAULT_COMPRESSION,
    level: int = 1,
    target_shard_bytes: int = TARGET_SHARD_BYTES,
    progress: ProgressCallback | None = None,
    thumbnail: bool = False,
    pyramid: PyramidOption = None,
    method: Method = "mean",
    channel_names: Sequence[str] | None = None,
    rgb: bool = False,
    channel_colours: Sequence[str | None] | None = None,
    levels_only: bool = False,
) -> WriteResult:
    """Write ``image`` as an OME-Zarr 0.5 image (group at the store root, level 0 at ``"0"``).

    ``pyramid`` adds coarser levels (``"1"``, ``"2"`` ...; see `_pyramid.plan_levels`), reduced by
    ``method``, built from the blocks of level 0 as they are read. ``channel_names``,
    ``channel_colours`` (``RRGGBB``; None: a default) and ``rgb`` go into the ``omero`` block. With
    ``thumbnail``, a PNG thumbnail of the coarsest level's max projection is made too (in a worker
    thread, as soon as every block has been read) and returned in the result; it is not written to the
    store. With ``levels_only``, ``image`` is a stored level 0 and only the coarser
    levels are written (their arrays at ``"1"``, ``"2"`` ... of ``store``; no group document).
    """
    started = time.perf_counter()
    layouts, factors = plan_image(
        image, compression=compression, level=level, target_shard_bytes=target_shard_bytes, pyramid=pyramid
    )
    base = layouts[0]
    limiter = limiter if limiter is not None else anyio.CapacityLimiter(4)
    if len(layouts) == 1 and not levels_only and math.prod(base.shard_grid) == 1:
        # One shard and no coarser level, whatever its size: the whole image in one worker-thread hop.
        # Five hops (array document, shard encode, shard put, group document, thumbnail) and their
        # event-loop turns cost a 2048x2048 plane ~0.7 ms of client CPU (of ~13 ms); its three puts one
        # after the other cost no throughput with other images in flight beside it.
        whole = partial(
            write_small_image,
            store,
            image,
            base,
            name=name,
            thumbnail=thumbnail,
            channel_names=channel_names,
            channel_colours=channel_colours,
            rgb=rgb,
        )
        try:
            result = await anyio.to_thread.run_sync(whole, limiter=limiter)
        except BaseException:
            await _cleanup(store, small_image_keys(base, thumbnail=thumbnail))
            raise
        if progress is not None:
            progress(base.nbytes, base.nbytes)
        return result
    codecs = [_codec(layout) for layout in layouts]
    builder = PyramidBuilder(layouts, factors, method) if len(layouts) > 1 else None
    coarsest = len(layouts) - 1
    projection = MaxProjection(layouts[coarsest].shape, layouts[coarsest].dtype)
    ranges = _ChannelRanges(base)
    # One shard per token in flight: more would only queue whole shards in memory.
    slots = anyio.Semaphore(max(1, int(limiter.total_tokens)))
    written: list[str] = []
    counters = {"stored": 0, "done": 0, "read": 0}
    shard_count = math.prod(base.shard_grid)
    made: list[Thumbnail] = []

    def encode(position: tuple[int, ...]) -> list[tuple[str, memoryview | bytes | ShardPayload]]:
        region = base.shard_region(position)
        block: Any = image.array[region]
        block = _computed(block) if image.is_lazy else np.asarray(block)
        ranges.add(block, region)
        blocks = [(0, position, region, block)]
        if builder is not None:
            blocks += builder.add(0, region, block)
        out: list[tuple[str, memoryview | bytes | ShardPayload]] = []
        for k, pos, reg, pixels in blocks[1:] if levels_only else blocks:
            if k == coarsest:
                projection.add(pixels, reg)
            out.append((layouts[k].shard_key(pos), shard_payload(pixels, layouts[k], codecs[k])))
        return out

    def make() -> None:
        made.append(make_thumbnail(projection.image))

    array_docs = [_array_document(layout) for layout in layouts]
    written_arrays = layouts[1:] if levels_only else layouts

    def write_group() -> None:
        ome = ome_attributes(
            base.dims,
            image.pixel_size,
            name=name,
            levels=factors,
            method=method if builder is not None else None,
            omero=omero_block(
                ranges.channels(channel_names or image.channel_names, channel_colours), rgb=rgb
            ),
        )
        store.put("zarr.json", _encode_json(group_metadata(ome)))

    def write_arrays() -> None:
        for layout, doc in zip(layouts, array_docs, strict=True):
            if layout in written_arrays:
                store.put(f"{layout.path}/zarr.json", doc)

    async def run_shard(position: tuple[int, ...], tg: anyio.abc.TaskGroup) -> None:
        try:
            payloads = await anyio.to_thread.run_sync(partial(encode, position), limiter=limiter)
            written.extend(key for key, _ in payloads)
            counters["read"] += 1
            if counters["read"] == shard_count:
                # Every block has been read: the channel ranges are known, the projection complete.
                if not levels_only:
                    written.append("zarr.json")
                    tg.start_soon(partial(anyio.to_thread.run_sync, write_group, limiter=limiter))
                if thumbnail:
                    tg.start_soon(partial(anyio.to_thread.run_sync, make, limiter=limiter))
            for key, payload in payloads:
                await anyio.to_thread.run_sync(store.put, key, payload, limiter=limiter)
                counters["stored"] += len(payload)
            region = base.shard_region(position)
            counters["done"] += math.prod(r.stop - r.start for r in region) * base.dtype.itemsize
            if progress is not None:
                progress(counters["done"], base.nbytes)
        finally:
            slots.release()

    async def write_blocks() -> None:
        try:
            with full_collections_deferred():
                async with anyio.create_task_group() as tg:
                    # The arrays' metadata goes up beside the first shard rather than after the last:
                    # nothing reads the store before the server records it.
                    written.extend(f"{layout.path}/zarr.json" for layout in written_arrays)
                    tg.start_soon(partial(anyio.to_thread.run_sync, write_arrays, limiter=limiter))
                    for position in base.shard_positions():
                        await slots.acquire()
                        tg.start_soon(run_shard, position, tg)
        except BaseExceptionGroup as group:
            # Callers expect the one mikro error (GrantError, StorageError ...), not a task-group wrapper.
            raise _first_error(group)  # noqa: B904 - the error keeps its own cause

    try:
        await write_blocks()
    except BaseException:
        await _cleanup(store, written)
        raise
    return WriteResult(
        layout=base,
        bytes_stored=counters["stored"],
        seconds=time.perf_counter() - started,
        projection=projection.image,
        keys=tuple(written),
        array_metadata=array_docs[0],
        thumbnail=made[0] if made else None,
        levels=tuple(layouts),
        factors=tuple(factors),
        level_metadata=tuple(array_docs),
    )


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if not isinstance(exc, cancelled):
            return exc
    return group


async def _cleanup(store: GrantedStore, keys: list[str]) -> None:
    """Delete what a failed upload wrote; bounded in time, never raises (the original error matters)."""
    if not keys:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
        try:
            # abandon_on_cancel: an unreachable store must not hold the caller past the deadline.
            await anyio.to_thread.run_sync(store.delete, list(keys), abandon_on_cancel=True)
        except Exception as exc:
            log.warning("could not delete %d objects of a failed upload: %s", len(keys), exc)
