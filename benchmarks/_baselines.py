"""The baselines, none of which uses mikro: raw obstore, tensorstore, zarr3+obstore, zarr v2+s3fs.

Every function here is the timed body of one contender; setup and cleanup are the caller's.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import obstore
from _infra import MotoS3
from obstore.store import LocalStore, S3Store

__all__ = [
    "Layout",
    "local_raw_put",
    "local_zarr_write",
    "object_sizes",
    "raw_get",
    "raw_get_ranges",
    "raw_put",
    "s3_store",
    "stored_bytes",
    "ts_read",
    "ts_write",
    "wipe",
    "zarr2_s3fs_write",
    "zarr_obstore_read",
    "zarr_obstore_write",
]

#: Threads for the raw obstore baselines (obstore's sync API blocks one thread per request).
RAW_THREADS = 8


def s3_store(
    s3: MotoS3,
    bucket: str,
    prefix: str | None = None,
    *,
    endpoint: str | None = None,
    unsigned_payload: bool = False,
) -> S3Store:
    """An obstore S3Store on moto; ``unsigned_payload`` as mikro's client sets it (no SHA-256 of bodies)."""
    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint or s3.endpoint,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
        region=s3.region,
        client_options={"allow_http": True},
        unsigned_payload=unsigned_payload,
    )


def wipe(store: S3Store, prefix: str | None = None) -> None:
    """Delete every object under `prefix` (moto keeps them in memory)."""
    paths = [m["path"] for batch in obstore.list(store, prefix) for m in batch]
    for i in range(0, len(paths), 1000):
        obstore.delete(store, paths[i : i + 1000])


def stored_bytes(store: S3Store, prefix: str | None = None) -> tuple[int, list[str]]:
    metas = [m for batch in obstore.list(store, prefix) for m in batch]
    return sum(int(m["size"]) for m in metas), [m["path"] for m in metas]


class Layout:
    """Chunking and codecs of one 2-D plane, stacked along a leading axis of 1-plane chunks."""

    def __init__(
        self,
        chunks: tuple[int, int],
        shards: tuple[int, int] | None,
        compressors: list[dict[str, Any]] | None,
    ) -> None:
        self.chunks = chunks
        self.shards = shards
        self.compressors = compressors

    @classmethod
    def uncompressed(cls, plane: tuple[int, int]) -> Layout:
        return cls(plane, None, None)

    @classmethod
    def from_zarr_json(cls, meta: dict[str, Any]) -> Layout:
        """The layout of the last two axes of an array, from its zarr v3 metadata."""
        chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        codecs = meta["codecs"]
        shards = None
        if codecs and codecs[0]["name"] == "sharding_indexed":
            shards = chunks
            chunks = tuple(codecs[0]["configuration"]["chunk_shape"])
            codecs = codecs[0]["configuration"]["codecs"]
        compressors = [c for c in codecs if c["name"] not in ("bytes", "transpose")] or None
        return cls(
            (int(chunks[-2]), int(chunks[-1])),
            None if shards is None else (int(shards[-2]), int(shards[-1])),
            compressors,
        )

    def describe(self) -> str:
        codec = "none" if not self.compressors else ", ".join(_codec_str(c) for c in self.compressors)
        shard = f", shards {self.shards}" if self.shards else ""
        return f"chunks {self.chunks}{shard}, codec {codec}"

    def zarr_kwargs(self) -> dict[str, Any]:
        return {
            "chunks": (1, *self.chunks),
            "shards": None if self.shards is None else (1, *self.shards),
            "compressors": self.compressors,
        }

    def ts_codecs(self) -> tuple[list[int], list[dict[str, Any]]]:
        inner: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
        inner += self.compressors or []
        if self.shards is None:
            return [1, *self.chunks], inner
        sharding = {
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [1, *self.chunks],
                "codecs": inner,
                "index_codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "crc32c"},
                ],
            },
        }
        return [1, *self.shards], [sharding]


def _codec_str(c: dict[str, Any]) -> str:
    conf = c.get("configuration") or {}
    inner = ",".join(f"{k}={v}" for k, v in conf.items() if k in ("level", "cname", "clevel", "shuffle"))
    return f"{c['name']}({inner})" if inner else str(c["name"])


# --- raw obstore: the limit ----------------------------------------------------------------------


def raw_put(store: S3Store | LocalStore, prefix: str, planes: np.ndarray) -> None:
    """One object per plane, RAW_THREADS in flight (obstore's sync API, one thread per request)."""

    def put(i: int) -> None:
        obstore.put(store, f"{prefix}/{i}", memoryview(planes[i]).cast("B"), use_multipart=False)

    with ThreadPoolExecutor(RAW_THREADS) as pool:
        list(pool.map(put, range(len(planes))))


#: The small objects mikro writes beside each image's pixels: the OME-Zarr group's and the array's
#: zarr.json (typical sizes for a 2048x2048 uint16 plane). The thumbnail is left out, as mikro's own
#: addition: the server makes a one-shard image's when it is first read (``0/thumbnail.png``), and a larger
#: image's client sends its PNG with the image's registration.
IMAGE_SIDE_OBJECTS = (1_400, 1_100)
#: Where mikro puts them and a one-shard image's pixels: the floor writes the same files and folders.
IMAGE_SIDE_KEYS = ("zarr.json", "0/zarr.json")
IMAGE_SHARD_KEY = "0/c.0.0"


def raw_put_image_objects(store: S3Store | LocalStore, prefix: str, planes: np.ndarray) -> None:
    """What one OME-Zarr image per plane costs the store at the least: its pixels plus the small objects
    mikro writes with them (`IMAGE_SIDE_OBJECTS`), RAW_THREADS in flight, no metadata server."""
    small = [(key, bytes(n)) for key, n in zip(IMAGE_SIDE_KEYS, IMAGE_SIDE_OBJECTS, strict=True)]

    def put(i: int) -> None:
        shard = f"{prefix}/{i}/{IMAGE_SHARD_KEY}"
        obstore.put(store, shard, memoryview(planes[i]).cast("B"), use_multipart=False)
        for key, body in small:
            obstore.put(store, f"{prefix}/{i}/{key}", body, use_multipart=False)

    with ThreadPoolExecutor(RAW_THREADS) as pool:
        list(pool.map(put, range(len(planes))))


def raw_get(store: S3Store, paths: Sequence[str]) -> int:
    def get(path: str) -> int:
        return len(obstore.get(store, path).bytes())

    with ThreadPoolExecutor(RAW_THREADS) as pool:
        return sum(pool.map(get, paths))


def object_sizes(store: S3Store, prefix: str | None = None) -> dict[str, int]:
    return {m["path"]: int(m["size"]) for batch in obstore.list(store, prefix) for m in batch}


def raw_get_ranges(store: S3Store, sizes: dict[str, int], range_bytes: int) -> int:
    """Every object fetched as range GETs of `range_bytes` (small objects whole), RAW_THREADS in flight."""
    jobs = [
        (path, lo, min(lo + range_bytes, size))
        for path, size in sizes.items()
        for lo in range(0, size, range_bytes)
    ]

    def get(job: tuple[str, int, int]) -> int:
        path, lo, hi = job
        return len(obstore.get_range(store, path, start=lo, end=hi))

    with ThreadPoolExecutor(RAW_THREADS) as pool:
        return sum(pool.map(get, jobs))


def local_raw_put(root: Path, prefix: str, planes: np.ndarray) -> None:
    raw_put(LocalStore(root, mkdir=True), prefix, planes)


# --- tensorstore ---------------------------------------------------------------------------------


def _ts_kvstore(s3: MotoS3, bucket: str, prefix: str) -> dict[str, Any]:
    # tensorstore reads AWS_* from the environment ("environment" credentials): set once, same keys as moto.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", s3.access_key)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    return {
        "driver": "s3",
        "bucket": bucket,
        "path": prefix.rstrip("/") + "/",
        "endpoint": s3.endpoint,
        "aws_region": s3.region,
        "aws_credentials": {"type": "environment"},
    }


def ts_write(s3: MotoS3, bucket: str, prefix: str, data: np.ndarray, layout: Layout) -> None:
    import tensorstore as ts

    chunk_shape, codecs = layout.ts_codecs()
    spec = {
        "driver": "zarr3",
        "kvstore": _ts_kvstore(s3, bucket, prefix),
        "metadata": {
            "shape": list(data.shape),
            "data_type": str(data.dtype),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
            "codecs": codecs,
        },
        "create": True,
        "delete_existing": True,
    }
    arr = ts.open(spec).result()
    arr.write(data).result()


def ts_read(s3: MotoS3, bucket: str, prefix: str) -> np.ndarray:
    import tensorstore as ts

    arr = ts.open({"driver": "zarr3", "kvstore": _ts_kvstore(s3, bucket, prefix), "open": True}).result()
    return np.asarray(arr.read().result())


# --- zarr-python -------------------------------------------------------------------------------


def zarr_obstore_write(store: S3Store | LocalStore, name: str, data: np.ndarray, layout: Layout) -> None:
    import zarr
    from zarr.storage import ObjectStore

    arr = zarr.create_array(
        ObjectStore(store),
        name=name,
        shape=data.shape,
        dtype=data.dtype,
        zarr_format=3,
        **layout.zarr_kwargs(),
    )
    arr[...] = data


def zarr_obstore_read(store: S3Store, name: str | None = None) -> np.ndarray:
    import zarr
    from zarr.storage import ObjectStore

    arr = zarr.open_array(ObjectStore(store, read_only=True), path=name or "", mode="r")
    return np.asarray(arr[...])


def local_zarr_write(root: Path, name: str, data: np.ndarray) -> None:
    import zarr
    from zarr.storage import LocalStore as ZarrLocalStore

    arr = zarr.create_array(
        ZarrLocalStore(root),
        name=name,
        shape=data.shape,
        dtype=data.dtype,
        zarr_format=3,
        **Layout.uncompressed(data.shape[-2:]).zarr_kwargs(),  # type: ignore[arg-type]
    )
    arr[...] = data


def zarr2_s3fs_write(s3: MotoS3, bucket: str, prefix: str, data: np.ndarray) -> None:
    """The upstream 0.3 way: zarr v2 format over s3fs (the installed s3fs is sync, so fsspec wraps it)."""
    import s3fs
    import zarr
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
    from zarr.storage import FsspecStore

    fs = s3fs.S3FileSystem(
        key=s3.access_key,
        secret=s3.secret_key,
        client_kwargs={"endpoint_url": s3.endpoint, "region_name": s3.region},
        skip_instance_cache=True,
    )
    if not getattr(fs, "async_impl", False):
        fs = AsyncFileSystemWrapper(fs, asynchronous=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = FsspecStore(fs, path=f"{bucket}/{prefix}", read_only=False)
        arr = zarr.create_array(
            store,
            shape=data.shape,
            dtype=data.dtype,
            chunks=(1, *data.shape[-2:]),
            compressors=None,
            zarr_format=2,
        )
        arr[...] = data


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
