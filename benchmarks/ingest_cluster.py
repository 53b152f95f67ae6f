"""Ingest on a dask cluster beside the same ingest in this process (issue 16, item 8).

    python benchmarks/ingest_cluster.py [--quick] [--runs 3] [--workers 2]

Writes OME-TIFF files of 4 channels (tifffile), starts `mikro serve` (folder store) and a LocalCluster of
spawned single-threaded worker processes, warms the workers up (their first task imports bioio and
zarr), then ingests the folder with ``m.ingest(folder)`` and with ``m.ingest(folder, cluster=client)``,
interleaved, a fresh user each run, each after the same settle. Printed per contender: MiB/s,
images/s, this process's CPU per GiB (for the cluster: the session and the LocalCluster's scheduler,
which runs in this process) and the workers' CPU per GiB. What the cluster buys is the client's CPU:
hashing, reading and encoding move to the workers; on a machine with a few cores, both paths share
them, so wall time is no cluster's figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from _harness import MIB
from _infra import MikroServer, start_mikro_server
from _ingest import SETTLE_SECONDS
from ingest_files import _user, write_files
from rich.console import Console
from rich.table import Table

GIB = 1024 * MIB


def _worker_cpu(client: Any) -> float:
    return float(sum(client.run(time.process_time).values()))


def ingest_once(server: MikroServer, folder: Path, client: Any | None) -> dict[str, float]:
    """One timed ``m.ingest(folder)`` by a fresh user (on ``client``'s cluster when given)."""
    import mikro

    token = _user(server)

    async def main() -> tuple[float, float, int]:
        async with mikro.connect(server.url, token=token, timeout=120) as m:
            w0, c0 = time.perf_counter(), time.process_time()
            report = await m.ingest(folder, cluster=client, concurrency=8)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            assert report.ok, [f.error for f in report.failed][:3]
            return wall, cpu, report.created

    workers0 = _worker_cpu(client) if client is not None else 0.0
    wall, cpu, images = anyio.run(main)
    workers = _worker_cpu(client) - workers0 if client is not None else 0.0
    return {"wall": wall, "cpu": cpu, "workers_cpu": workers, "images": images}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 files of 512x512x4ch (smoke test)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per contender")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster")
    args = parser.parse_args(argv)
    files, side = (8, 512) if args.quick else (64, 2048)
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    workdir = Path(tempfile.mkdtemp(prefix="mikro-bench-cluster-"))
    try:
        folder = workdir / "files"
        nbytes = write_files(folder, files, side, 4, ome=True)
        warm = workdir / "warm"
        write_files(warm, 1, 64, 4, ome=True)

        from distributed import Client, LocalCluster

        results: dict[str, list[dict[str, float]]] = {"this process": [], "cluster": []}
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(start_mikro_server(workdir))
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=args.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    silence_logs=40,
                )
            )
            client = stack.enter_context(Client(cluster, set_as_default=False))
            ingest_once(server, warm, client)
            for _ in range(args.runs):
                # The same settle before each contender as the other ingest bars (see _ingest.py).
                time.sleep(SETTLE_SECONDS)
                results["this process"].append(ingest_once(server, folder, None))
                time.sleep(SETTLE_SECONDS)
                results["cluster"].append(ingest_once(server, folder, client))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"ingest {files} OME-TIFF files of {side}x{side}x4ch uint16 ({nbytes / MIB:.0f} MiB)")
    for column in (
        "contender",
        "MiB/s",
        "images/s",
        "client CPU s/GiB",
        "workers' CPU s/GiB",
        "ratio (MiB/s)",
    ):
        table.add_column(column)
    floor = statistics.median(nbytes / MIB / r["wall"] for r in results["this process"])
    for name, runs in results.items():
        rate = statistics.median(nbytes / MIB / r["wall"] for r in runs)
        table.add_row(
            name,
            f"{rate:.1f}",
            f"{statistics.median(r['images'] / r['wall'] for r in runs):.1f}",
            f"{statistics.median(r['cpu'] for r in runs) / (nbytes / GIB):.2f}",
            f"{statistics.median(r['workers_cpu'] for r in runs) / (nbytes / GIB):.2f}"
            if name == "cluster"
            else "-",
            f"{rate / floor:.2f}",
        )
    console.print(table)
    console.print(
        f"{os.cpu_count()} cores, load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"; {args.workers} workers x 1 thread; {args.runs} interleaved runs, medians",
    )
    return 0


if __name__ == "__main__":
    from run import exit_now

    exit_now(main())
