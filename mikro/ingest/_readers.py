"""Open a microscope file and give its scenes as lazy arrays with their metadata.

One interface (:class:`Source`), two implementations behind it chosen by the file:

- :class:`BioSource`: bioio picks the reader plugin for the file (bioio-ome-tiff, bioio-tifffile,
  and with ``mikro[formats]`` bioio-czi, bioio-nd2, bioio-lif) and gives its dims and metadata. A
  TIFF's pixels are read by tifffile itself when its series has the same dims as bioio reports (nearly
  always): a scene of up to one shard at once (bioio's dask graph costs 20-30x more CPU than the
  read), a larger one lazily, in blocks of whole tiles or strips of about :data:`BLOCK_BYTES` through
  tifffile's zarr store over the file, so even a single plane larger than memory is read part by
  part. Other files' dask arrays come from bioio, one y/x plane per chunk.
- :class:`ZarrSource`: OME-Zarr written by other tools (ngff-zarr, ome-zarr-py, bioformats2raw), read
  with zarr: the array the first ``multiscales`` entry's first dataset points to, whatever its path, with
  its axes, scales and ``omero`` channel labels (bioio-ome-zarr drops the labels and reports scale 1 for
  images written by ome-zarr-py, hence zarr directly).

Everything here blocks (file I/O): call it in a worker thread.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mikro.datalayer._layout import TARGET_SHARD_BYTES
from mikro.ingest._metadata import SceneMetadata, from_ome, from_reader, from_tiff_tags, real_channel_names
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
BLOCK_BYTES = 16 * 2**20
#: bioio's reader plugins for TIFF, whose dims come from tifffile's series (so tifffile can read them).
_TIFF_READER_MODULES = ("bioio_ome_tiff", "bioio_tifffile")
#: bioio's dims order; tifffile's axes of the same letters mean the same.
_BIOIO_ORDER = "TCZYXS"
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
    if path.is_dir():
        return ZarrSource(path)
    if not path.is_file():
        raise ReaderError("not a file")
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
        except UnsupportedFileFormatError:
            plugin = EXTRA_FOR_SUFFIX.get(suffix)
            if plugin is not None and not _reader_classes(suffix):
                raise ReaderError(
                    f"no reader for {path.suffix} files is installed: pip install 'mikro[formats]' ({plugin})"
                ) from None
            if suffix in _READERS:
                raise ReaderError(f"unreadable: not a valid {suffix} file") from None
            raise ReaderError(f"no reader for this file type ({path.suffix or 'no suffix'})") from None
        except ReaderError:
            raise
        except Exception as exc:
            raise ReaderError(f"unreadable: {_one_line(exc)}") from exc
        self.scene_count = len(self.scenes)
        if not self.scene_count:
            raise ReaderError("unreadable: no image found in the file")
        self._reader_module = type(self.image.reader).__module__
        self._small = path.stat().st_size <= SMALL_FILE_BYTES
        # Open while lazily read scenes may still be computed: closed with the source.
        self._tiff: Any = None

    def scene(self, index: int) -> Scene:
        img = self.image
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.set_scene(index)
                direct = self._tiff_pixels(
                    index, img.dims.order, dict(zip(img.dims.order, img.dims.shape, strict=True))
                )
                if direct is not None:
                    pixels, order = direct
                elif self._small:
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

    def _tiff_pixels(self, index: int, order: str, sizes: dict[str, int]) -> tuple[Any, str] | None:
        """Scene ``index``'s pixels read by tifffile, in bioio's dims (size-1 dims dropped) and their
        order; None when this is no TIFF or tifffile's series has other dims than bioio's (bioio
        reads it then)."""
        if not self._reader_module.startswith(_TIFF_READER_MODULES):
            return None
        import tifffile

        if self._tiff is None:
            self._tiff = tifffile.TiffFile(self.path)
        series_list = self._tiff.series
        if index >= len(series_list):
            return None
        series = series_list[index]
        wanted = [(d, int(sizes[d])) for d in order if sizes[d] > 1 or d in "YX"]
        kept = [
            (i, a, int(n))
            for i, (a, n) in enumerate(zip(series.axes, series.shape, strict=True))
            if n > 1 or a in "YX"
        ]
        if any(a not in _BIOIO_ORDER for _, a, _ in kept):
            return None
        kept.sort(key=lambda k: _BIOIO_ORDER.index(k[1]))
        if [(a, n) for _, a, n in kept] != wanted:
            return None
        # tifffile's axes in bioio's order, the others (all of size 1) indexed away.
        positions = [i for i, _, _ in kept]
        drop = tuple(slice(None) if i in positions else 0 for i in range(len(series.shape)))
        remaining = sorted(positions)
        permutation = [remaining.index(i) for i in positions]
        letters = "".join(a for _, a, _ in kept)
        nbytes = math.prod(series.shape) * series.dtype.itemsize
        if nbytes <= WHOLE_READ_BYTES:
            return series.asarray()[drop].transpose(permutation), letters
        return _tiff_lazy(series)[drop].transpose(permutation), letters

    def _metadata(self, index: int) -> SceneMetadata:
        img = self.image
        if self._reader_module.startswith("bioio_tifffile"):
            # bioio-tifffile reports 1 µm for a TIFF without a physical resolution: read the tags.
            meta = from_tiff_tags(str(self.path), index)
            meta.channel_names = real_channel_names(img.channel_names)
            return meta
        try:
            ome = img.ome_metadata
        except Exception:
            # The reader cannot express its metadata as OME (bioio-czi for some files): its own values.
            ome = None
        return from_ome(ome, index) if ome is not None and list(ome.images) else from_reader(img)

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()
        close = getattr(self.image, "close", None)
        if close is not None:
            close()


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
    chunks = [1] * len(shape)
    chunks[ydim], chunks[xdim] = y_block, x_block
    for i, a in enumerate(series.axes):
        if a == "S":
            chunks[i] = shape[i]
    return da.from_zarr(array, chunks=tuple(chunks))  # type: ignore[no-untyped-call]


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
