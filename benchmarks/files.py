"""Files kept as they are: ``upload_file`` / ``download_file`` beside raw obstore in the same run.

    python benchmarks/files.py [--quick] [--mib 512] [--runs 3] [--only s3,local]

For each store (moto's S3 and a local folder, each behind its own ``mikro serve`` process) the contenders
run interleaved, ``--runs`` times each, and the table shows medians: MiB/s, client CPU s/GiB (this
process's ``time.process_time()``: moto and the server are other processes) and mikro / raw.

- upload: ``await m.upload_file(path)`` (grant, multipart in a worker thread, SHA-256 on the way,
  ``createFile``) against the floor, raw ``obstore.put(store, key, Path)`` of the same file with the same
  part size and parts in flight (no hash, no record).
- download: ``await m.download_file(file, path)`` (streamed to a temporary file, hash checked, renamed)
  against raw ``obstore.get`` streamed to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import obstore
from obstore.store import LocalStore, S3Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _infra import MotoS3, start_mikro_server, start_moto

import mikro
from mikro.datalayer._files import PART_BYTES, PARTS_IN_FLIGHT, PIECE_BYTES

MIB = 1024 * 1024


async def _measure(run: Callable[[], Awaitable[Any]], nbytes: int) -> tuple[float, float]:
    """(MiB/s, client CPU s/GiB) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return nbytes / MIB / wall, cpu / (nbytes / 1024**3)


def _raw_store(kind: str, moto: MotoS3 | None, workdir: Path) -> LocalStore | S3Store:
    if kind == "local":
        root = workdir / "raw"
        root.mkdir(exist_ok=True)
        return LocalStore(root)
    assert moto is not None
    moto.create_bucket("raw-files")
    return S3Store(
        "raw-files",
        endpoint=moto.endpoint,
        access_key_id=moto.access_key,
        secret_access_key=moto.secret_key,
        region=moto.region,
        client_options={"allow_http": True},
        virtual_hosted_style_request=False,
        unsigned_payload=True,
    )


async def bench_store(
    kind: str, source: Path, runs: int, moto: MotoS3 | None, workdir: Path
) -> list[tuple[str, str, float, float]]:
    nbytes = source.stat().st_size
    raw = _raw_store(kind, moto, workdir)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with start_mikro_server(workdir, s3=moto, bucket=f"files-{kind}" if moto else None, name=kind) as server:
        async with mikro.connect(server.url, token=server.token, timeout=600) as m:
            target = workdir / "downloaded.bin"
            stored: list[Any] = []

            async def mikro_upload() -> None:
                stored.append(await m.upload_file(source))

            async def raw_upload() -> None:
                await anyio.to_thread.run_sync(
                    lambda: obstore.put(
                        raw, "file", source, chunk_size=PART_BYTES, max_concurrency=PARTS_IN_FLIGHT
                    )
                )

            async def mikro_download() -> None:
                await m.download_file(stored[-1], target)

            def raw_get() -> None:
                with open(target, "wb") as out:
                    for piece in obstore.get(raw, "file").stream(min_chunk_size=PIECE_BYTES):
                        out.write(piece)

            async def raw_download() -> None:
                await anyio.to_thread.run_sync(raw_get)

            contenders = [
                ("upload", "mikro upload_file", mikro_upload),
                ("upload", "raw obstore put", raw_upload),
                ("download", "mikro download_file", mikro_download),
                ("download", "raw obstore get", raw_download),
            ]
            for _ in range(runs):  # interleaved: A, B, C, D, A, B, C, D, ...
                for op, name, run in contenders:
                    results.setdefault((op, name), []).append(await _measure(run, nbytes))
                    with contextlib.suppress(FileNotFoundError):
                        target.unlink()
            for file in stored:
                await m.delete_file(file)
    return [
        (op, name, statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        for (op, name), rs in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="64 MiB, one run")
    parser.add_argument("--mib", type=int, default=512, help="file size in MiB (default 512)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="s3,local", help="stores: s3, local (comma-separated)")
    args = parser.parse_args()
    mib, runs = (64, 1) if args.quick else (args.mib, args.runs)
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    load = os.getloadavg()[0]
    print(f"file of {mib} MiB, {runs} run(s) each, load average {load:.2f}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="mikro-files-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        source = workdir / "source.bin"
        with open(source, "wb") as out:
            for _ in range(mib):
                out.write(os.urandom(MIB))
        rows: list[tuple[str, str, str, float, float]] = []
        for kind in kinds:
            moto = stack.enter_context(start_moto(workdir)) if kind == "s3" else None
            for op, name, speed, cpu in anyio.run(bench_store, kind, source, runs, moto, workdir):
                rows.append((kind, op, name, speed, cpu))
    raw = {(k, op): speed for k, op, name, speed, _ in rows if name.startswith("raw")}
    print(f"{'store':6} {'operation':9} {'contender':22} {'MiB/s':>8} {'CPU s/GiB':>10} {'x raw':>6}")
    for kind, op, name, speed, cpu in rows:
        print(f"{kind:6} {op:9} {name:22} {speed:8.0f} {cpu:10.2f} {speed / raw[(kind, op)]:6.2f}")


if __name__ == "__main__":
    main()
