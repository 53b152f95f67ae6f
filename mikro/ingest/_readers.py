"""Open a microscope file and give its scenes as lazy arrays with their metadata.

One interface (:class:`Source`), three implementations behind it chosen by the file:

- :class:`TiffSource`: a TIFF whose series' dims are bioio's letters (nearly all OME-TIFF, plain and
  ImageJ TIFF), read by tifffile alone, giving the image bioio would (dims in bioio's order, names,
  the OME metadata's fields images keep, see `_ome_xml`) without bioio's per-file cost (its dask
  graph costs 20-30x more CPU than the read). A scene of up to one shard is read at once, a larger
  one lazily, in blocks of whole tiles or strips of about :data:`BLOCK_BYTES` through tifffile's zarr
  store over the file (an uncompressed page of one strip: rows read from the file), so even a single
  plane larger than memory is read part by part.
- :class:`BioSource`: bioio picks the reader plugin for the file (bioio-ome-tiff, bioio-tifffile for
  the other TIFFs, and with ``mikro[formats]`` bioio-czi, bioio-nd2, bioio-lif). Its dask arrays are
  asked for one y/x plane per chunk.
- :class:`ZarrSource`: OME-Zarr written by other tools (ngff-zarr, ome-zarr-py, bioformats2raw), read
  with zarr: the array the first ``multiscales`` entry's first dataset points to, whatever its path, with
  its axes, scales and ``omero`` channel labels (bioio-ome-zarr drops the labels and reports scale 1 for
  images written by ome-zarr-py, hence zarr directly).

Everything here blocks (file I/O): call it in a worker thread.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mikro.datalayer._layout import TARGET_SHARD_BYTES
from mikro.datalayer._result_memory import result_array
from mikro.ingest._metadata import SceneMetadata, from_ome, from_reader, from_tiff_tags, real_channel_names
from mikro.ingest._ome_xml import parse_ome
from mikro.ingest._units import micrometres, seconds

__all__ = ["EXTRA_FOR_SUFFIX", "ReaderError", "Scene", "Source", "open_source"]

#: File types whose bioio plugin comes with the ``formats`` extra.
EXTRA_FOR_SUFFIX = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif"}
#: Files up to this size are read whole, not as a lazy array: one scene of one (compressed) file of this
#: size is a few shards at most, and a dask graph per small image costs more CPU than its pixels.
SMALL_FILE_BYTES = 4 * 2**20
#: TIFF scenes of up to this many pixel bytes (one shard) are read whole by tifffile.
WHOLE_READ_BYTES = TARGET_SHARD_BYTES
#: Larger TIFF scenes are read lazily in blocks of whole tiles (or strips) of about this many bytes.
BLOCK_BYTES = 4 * 2**20
#: bioio's dims order; tifffile's axes of the same letters mean the same.
_BIOIO_ORDER = "TCZYXS"
#: File suffixes :class:`TiffSource` reads.
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf")
#: bioio dims mikro keeps (``S``: samples of an RGB pixel, stored as channels).
_KEPT = ("T", "C", "Z", "Y", "X")


class ReaderError(Exception):
    """A file no reader can open (or whose image mikro cannot store): the one-line reason."""


@dataclass
class Scene:
    """One image of a file: its pixels (lazy, dask) in ``dims`` order and what is known about it."""

    index: int
    name: str | None
    data: Any
    dims: tuple[str, ...]
    metadata: SceneMetadata
    variety: str = "VOXEL"

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


class Source(Protocol):
    scene_count: int
    #: Whether the source is one file (kept as a ``File`` with ``keep_original``); a folder is not.
    is_file: bool

    def scene(self, index: int) -> Scene: ...

    def close(self) -> None: ...


def open_source(path: Path) -> Source:
    """The reader for ``path``; raises :class:`ReaderError` with a one-line reason when there is none."""
    # One stat (Path.is_dir and then is_file were two, for every file of an ingest).
    try:
        found = os.stat(path)
        mode, size = found.st_mode, found.st_size
    except (OSError, ValueError):
        mode, size = 0, 0
    if stat.S_ISDIR(mode):
        return ZarrSource(path)
    if not stat.S_ISREG(mode):
        raise ReaderError("not a file")
    if path.suffix.lower() in _TIFF_SUFFIXES:
        source = TiffSource.open(path, size)
        if source is not None:
            return source
    return BioSource(path)


def _reduce(data: Any, order: str, sizes: dict[str, int]) -> tuple[Any, tuple[str, ...], str]:
    """bioio's ``TCZYX[S]`` array as mikro dims: size-1 t/c/z dropped, RGB samples as channels."""
    variety = "VOXEL"
    index: list[Any] = []
    dims: list[str] = []
    samples = sizes.get("S", 1)
    if samples > 1 and sizes.get("C", 1) > 1:
        raise ReaderError(f"unsupported dims: {sizes.get('C')} channels of {samples} samples each")
    for d in order:
        n = sizes[d]
        if d == "S" and n > 1:
            index.append(slice(None))
            dims.append("c")
            variety = "RGB"
        elif d in _KEPT and (n > 1 or d in "YX"):
            index.append(slice(None))
            dims.append(d.lower())
        elif n == 1:
            index.append(0)
        else:
            raise ReaderError(f"unsupported dims: {order} with {d} of size {n}")
    return data[tuple(index)], tuple(dims), variety


#: Reader plugins to try, in order, by file suffix; other files go through bioio's own plugin search.
#: Naming the reader skips that search (it reads every installed plugin's entry point and requirements:
#: ~60 ms a file) and the warnings of the readers that do not fit.
_READERS = {
    ".tif": ("bioio_ome_tiff", "bioio_tifffile"),
    ".tiff": ("bioio_ome_tiff", "bioio_tifffile"),
    ".btf": ("bioio_ome_tiff", "bioio_tifffile"),
    ".czi": ("bioio_czi",),
    ".nd2": ("bioio_nd2",),
    ".lif": ("bioio_lif",),
}


@functools.cache
def _reader_classes(suffix: str) -> tuple[Any, ...]:
    found = []
    for module in _READERS.get(suffix, ()):
        try:
            found.append(importlib.import_module(module).Reader)
        except ImportError:
            continue  # that plugin is not installed: the next one, or bioio's search
    return tuple(found)


def _reader_for(path: Path, suffix: str) -> Any:
    """The reader class for ``path``, or None for bioio's plugin search."""
    classes = _reader_classes(suffix)
    if len(classes) > 1:
        # A TIFF: OME-TIFF when it carries OME-XML, else a plain (or ImageJ) TIFF.
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                is_ome = bool(tif.is_ome)
        except Exception as exc:
            raise ReaderError(f"unreadable: not a valid TIFF file ({_one_line(exc)})") from exc
        ome_first = [c for c in classes if c.__module__.startswith("bioio_ome_tiff")]
        others = [c for c in classes if c not in ome_first]
        return (ome_first if is_ome else others or ome_first)[0]
    return classes[0] if classes else None


class BioSource:
    """A file bioio reads (the plugin chosen by the file: its suffix, then what the reader accepts)."""

    is_file = True

    def __init__(self, path: Path) -> None:
        import bioio
        from bioio_base.exceptions import UnsupportedFileFormatError

        self.path = path
        suffix = path.suffix.lower()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader = _reader_for(path, suffix)
                self.image: Any = bioio.BioImage(path, reader=reader, chunk_dims=["Y", "X"])
                self.scenes = tuple(self.image.scenes)
        except ReaderError:
            raise
        except Exception as exc:
            plugin = EXTRA_FOR_SUFFIX.get(suffix)
            if plugin is not None and not _reader_classes(suffix):
                # Whatever bioio's own search made of it (no plugin, or one whose import fails).
                raise ReaderError(
                    f"no reader for {path.suffix} files is installed: pip install 'mikro[formats]' ({plugin})"
                ) from None
            if not isinstance(exc, UnsupportedFileFormatError):
                raise ReaderError(f"unreadable: {_one_line(exc)}") from exc
            if suffix in _READERS:
                raise ReaderError(f"unreadable: not a valid {suffix} file") from None
            raise ReaderError(f"no reader for this file type ({path.suffix or 'no suffix'})") from None
        self.scene_count = len(self.scenes)
        if not self.scene_count:
            raise ReaderError("unreadable: no image found in the file")
        self._reader_module = type(self.image.reader).__module__
        self._small = path.stat().st_size <= SMALL_FILE_BYTES

    def scene(self, index: int) -> Scene:
        img = self.image
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.set_scene(index)
                if self._small:
                    # Read at once (tifffile's page reads): a lazy array's graph costs more than the pixels.
                    whole = img.xarray_data
                    order, pixels = "".join(str(d) for d in whole.dims), whole.data
                else:
                    order, pixels = img.dims.order, img.dask_data
                sizes = {d: int(n) for d, n in zip(order, pixels.shape, strict=True)}
                data, dims, variety = _reduce(pixels, order, sizes)
                meta = self._metadata(index)
        except ReaderError:
            raise
        except Exception as exc:
            raise ReaderError(f"unreadable: {_one_line(exc)}") from exc
        return Scene(index, str(self.scenes[index]), data, dims, meta, variety)

    def _metadata(self, index: int) -> SceneMetadata:
        img = self.image
        if self._reader_module.startswith("bioio_tifffile"):
            # bioio-tifffile reports 1 µm for a TIFF without a physical resolution: read the tags.
            import tifffile

            with tifffile.TiffFile(self.path) as tif:
                meta = from_tiff_tags(tif, index)
            meta.channel_names = real_channel_names(img.channel_names)
            return meta
        try:
            ome = img.ome_metadata
        except Exception:
            # The reader cannot express its metadata as OME (bioio-czi for some files): its own values.
            ome = None
        return from_ome(ome, index) if ome is not None and list(ome.images) else from_reader(img)

    def close(self) -> None:
        close = getattr(self.image, "close", None)
        if close is not None:
            close()


class TiffSource:
    """A TIFF read by tifffile alone: pixels, tags, and the OME-XML fields images keep (`_ome_xml`).
    Used when every series' dims are bioio's letters (``TCZYXS``), so the image is the one bioio
    would give; bioio's readers cost 10-40 ms a file more (a dask graph, the OME-XML parsed twice)."""

    is_file = True

    def __init__(self, path: Path, tif: Any, ome: Any, handle: Any = None) -> None:
        self.path = path
        self._tif = tif
        self._handle = handle
        self._ome = ome
        self._series = list(tif.series)
        self.scene_count = len(self._series)

    @classmethod
    def open(cls, path: Path, size: int | None = None) -> TiffSource | None:
        """The source, or None when bioio should read the file (dims tifffile cannot name, OME-XML that
        does not parse or does not match the series). A file of ``size`` up to `SMALL_FILE_BYTES` is
        opened here and handed to tifffile, which would otherwise resolve its path's every component
        (six system calls, for every small file of an ingest); a larger one stays a path, which
        tifffile may open again for its lazy reads."""
        import tifffile

        handle = None
        try:
            if size is not None and size <= SMALL_FILE_BYTES:
                handle = open(path, "rb")  # noqa: SIM115 (closed with the source)
            tif = tifffile.TiffFile(path if handle is None else handle)
        except Exception as exc:
            if handle is not None:
                handle.close()
            raise ReaderError(f"unreadable: not a valid TIFF file ({_one_line(exc)})") from exc
        try:
            ome = _ome_document(tif)
            series = list(tif.series)
            fits = bool(series) and all(_tiff_axes(s) is not None for s in series)
            if fits and ome is not None and len(list(ome.images)) != len(series):
                fits = False
        except Exception:
            fits = False
        if not fits:
            tif.close()
            if handle is not None:
                handle.close()
            return None
        return cls(path, tif, ome, handle)

    def scene(self, index: int) -> Scene:
        series = self._series[index]
        try:
            axes = _tiff_axes(series)
            assert axes is not None  # checked when opened
            positions, letters = axes
            # The dims in bioio's order; the other axes (all of size 1) indexed away.
            drop = tuple(slice(None) if i in positions else 0 for i in range(len(series.shape)))
            remaining = sorted(positions)
            permutation = [remaining.index(i) for i in positions]
            nbytes = math.prod(series.shape) * series.dtype.itemsize
            pixels = _read_whole(series) if nbytes <= WHOLE_READ_BYTES else _tiff_lazy(series)
            pixels = pixels[drop].transpose(permutation)
            sizes = {d: int(n) for d, n in zip(letters, pixels.shape, strict=True)}
            data, dims, variety = _reduce(pixels, letters, sizes)
            if self._ome is not None:
                meta = from_ome(self._ome, index)
                name = str(list(self._ome.images)[index].id)
            else:
                meta = from_tiff_tags(self._tif, index)
                name = f"Image:{index}"  # bioio's name for a series of a plain TIFF
        except ReaderError:
            raise
        except Exception as exc:
            raise ReaderError(f"unreadable: {_one_line(exc)}") from exc
        return Scene(index, name, data, dims, meta, variety)

    def close(self) -> None:
        self._tif.close()
        if self._handle is not None:
            self._handle.close()


def _ome_document(tif: Any) -> Any:
    """The fields of the file's OME metadata that images keep (see `_ome_xml`), None for a TIFF without
    OME-XML."""
    if not tif.is_ome or not tif.ome_metadata:
        return None
    return parse_ome(tif.ome_metadata)


def _tiff_axes(series: Any) -> tuple[list[int], str] | None:
    """The axes of a tifffile series that mikro keeps (y, x and those longer than 1), as their positions
    and letters in bioio's order; None when one of them is no bioio dim (``I``, ``Q``: bioio guesses)."""
    kept = [
        (i, a) for i, (a, n) in enumerate(zip(series.axes, series.shape, strict=True)) if n > 1 or a in "YX"
    ]
    if any(a not in _BIOIO_ORDER for _, a in kept):
        return None
    kept.sort(key=lambda k: _BIOIO_ORDER.index(k[1]))
    return [i for i, _ in kept], "".join(a for _, a in kept)


def _read_whole(series: Any) -> Any:
    """A tifffile series (level 0) read at once into memory from `result_array`, not numpy's.

    numpy advises arrays of 4 MiB or more into transparent huge pages; on a VM whose balloon takes
    free memory back (Firecracker, many cloud VMs, this machine) a huge page is nearly always one the
    host must back again, and faulting in a 32 MiB scene so cost 3-7 CPU-s per GiB read against
    0.4-0.6 with small pages (measured here): most of what the like-for-like ingest bar spent.
    `result_array`'s memory has small pages and is reused once the scene is dropped (warm: no faults).
    """
    out, _ = result_array(series.shape, series.dtype)
    return series.asarray(out=out)


def _tiff_lazy(series: Any) -> Any:
    """A tifffile series (level 0) as a dask array of blocks of whole tiles or strips: computing a region
    reads (and decodes) only the tiles or strips it touches."""
    import dask.array as da
    import zarr

    array = zarr.open_array(series.aszarr(level=0), mode="r")
    segment = list(array.chunks)  # a tile (or strip) and its samples; 1 along the other dims
    shape = list(array.shape)
    ydim = series.axes.index("Y")
    xdim = series.axes.index("X")
    per_pixel = array.dtype.itemsize * (shape[-1] if series.axes.endswith("S") else 1)
    # Square-ish blocks of whole segments of about BLOCK_BYTES (a strip spans the width already).
    side = max(1, int(math.sqrt(BLOCK_BYTES / per_pixel)))
    x_block = min(shape[xdim], max(segment[xdim], side // segment[xdim] * segment[xdim]))
    rows = max(1, BLOCK_BYTES // (per_pixel * x_block))
    y_block = min(shape[ydim], max(segment[ydim], rows // segment[ydim] * segment[ydim]))
    source: Any = array
    if series.dataoffset is not None and math.prod(segment) * array.dtype.itemsize > BLOCK_BYTES:
        # One uncompressed strip per page (what tifffile writes by default): its segment is the whole
        # page, so read blocks of full-width rows straight from the file instead.
        source = _ContiguousPixels(series, shape, array.dtype)
        x_block = shape[xdim]
        y_block = min(shape[ydim], max(1, BLOCK_BYTES // (per_pixel * x_block)))
    chunks = [1] * len(shape)
    chunks[ydim], chunks[xdim] = y_block, x_block
    for i, a in enumerate(series.axes):
        if a == "S":
            chunks[i] = shape[i]
    if source is array:
        return da.from_zarr(array, chunks=tuple(chunks))  # type: ignore[no-untyped-call]
    return da.from_array(
        source, chunks=tuple(chunks), name=False, meta=np.empty((0,) * len(shape), array.dtype)
    )  # type: ignore[no-untyped-call]


class _ContiguousPixels:
    """An uncompressed series stored contiguously in its file, read block by block: a block (whole rows:
    y then x and samples, one index along the dims before y) is one read of its bytes."""

    def __init__(self, series: Any, shape: list[int], dtype: Any) -> None:
        self.path = series.parent.filehandle.path
        self.offset = int(series.dataoffset)
        self.shape = tuple(shape)
        self.ndim = len(shape)
        self.dtype = np.dtype(dtype)
        self._stored = self.dtype.newbyteorder(series.parent.byteorder)
        self._ydim = series.axes.index("Y")

    def __getitem__(self, key: tuple[slice, ...]) -> Any:
        y = self._ydim
        ranges = [range(*k.indices(n)) for k, n in zip(key, self.shape, strict=True)]
        row = math.prod(self.shape[y + 1 :])
        # Warm memory with small pages (see `_read_whole`); whole rows in the stored byte order are
        # read straight into it, with no block-sized array in between.
        out, _ = result_array([len(r) for r in ranges], self.dtype)
        if out.size == 0:
            return out
        rows = ranges[y]
        direct = self._stored == self.dtype and all(
            r == range(n) for r, n in zip(ranges[y + 1 :], self.shape[y + 1 :], strict=True)
        )
        with open(self.path, "rb") as f:
            for lead in itertools.product(*ranges[:y]):
                start = (
                    (int(np.ravel_multi_index((*lead, rows.start), self.shape[: y + 1])) * row)
                    if y
                    else rows.start * row
                )
                f.seek(self.offset + start * self._stored.itemsize)
                at = tuple(i - r.start for i, r in zip(lead, ranges, strict=False))
                if direct:
                    target = memoryview(out[at]).cast("B")
                    if f.readinto(target) != target.nbytes:
                        raise ValueError("the file ends before its pixels do")
                    continue
                block = np.fromfile(f, self._stored, count=len(rows) * row).reshape(
                    len(rows), *self.shape[y + 1 :]
                )
                out[at] = block[(slice(None), *key[y + 1 :])]
        return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class ZarrSource:
    """An OME-Zarr image (v0.4 or v0.5) written by another tool: one scene per ``multiscales`` entry."""

    scene_count: int
    is_file = False

    def __init__(self, path: Path) -> None:
        self.path = path
        attrs = _group_attributes(path)
        ome = attrs.get("ome", attrs)
        self.multiscales = ome.get("multiscales") or []
        if not self.multiscales:
            raise ReaderError("no reader for this folder: it is not an OME-Zarr image (no multiscales)")
        self.omero = ome.get("omero") or attrs.get("omero") or {}
        self.scene_count = len(self.multiscales)

    def scene(self, index: int) -> Scene:
        import dask.array as da
        import zarr

        multiscale = self.multiscales[index]
        try:
            axes = [a if isinstance(a, dict) else {"name": a} for a in multiscale["axes"]]
            dataset = multiscale["datasets"][0]
            array = zarr.open_array(str(self.path / dataset["path"]), mode="r")
        except Exception as exc:
            raise ReaderError(f"unreadable OME-Zarr: {_one_line(exc)}") from exc
        names = [str(a["name"]).lower() for a in axes]
        scale = _scale(multiscale, dataset, len(names))
        meta = SceneMetadata()
        for axis, name, step in zip(axes, names, scale, strict=True):
            if step is None or name == "c":
                continue
            unit = axis.get("unit")
            value = (
                seconds(step, unit) if axis.get("type") == "time" or name == "t" else micrometres(step, unit)
            )
            if value is not None:
                meta.pixel_size[name] = value
        channels = self.omero.get("channels") or []
        meta.channel_names = [c.get("label") for c in channels]
        if "t" in meta.pixel_size:
            from mikro.api import Acquisition

            meta.acquisition = Acquisition(time_increment=meta.pixel_size["t"])
        data = da.from_array(array, chunks=array.chunks)  # type: ignore[no-untyped-call]
        order = "".join(n.upper() for n in names)
        if set(order) - set("TCZYX"):
            raise ReaderError(f"unsupported dims: {names}")
        sizes = {d: int(n) for d, n in zip(order, array.shape, strict=True)}
        data, dims, variety = _reduce(data, order, sizes)
        return Scene(index, multiscale.get("name") or self.path.name, data, dims, meta, variety)

    def close(self) -> None:
        pass


def _group_attributes(path: Path) -> dict[str, Any]:
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        doc = path / name
        if doc.is_file():
            try:
                loaded = json.loads(doc.read_text())
            except (OSError, ValueError) as exc:
                raise ReaderError(f"unreadable OME-Zarr metadata: {_one_line(exc)}") from exc
            found = loaded.get(key, {}) if key else loaded
            return found if isinstance(found, dict) else {}
    raise ReaderError("no reader for this folder: it is not a zarr group")


def _scale(multiscale: dict[str, Any], dataset: dict[str, Any], ndim: int) -> list[float | None]:
    """Level 0's scale per axis (the dataset's scale times the multiscale's own, when it has one)."""
    out: list[float | None] = [None] * ndim
    for transforms in (dataset.get("coordinateTransformations"), multiscale.get("coordinateTransformations")):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                out = [float(s) * (o if o is not None else 1.0) for s, o in zip(t["scale"], out, strict=True)]
    return out
