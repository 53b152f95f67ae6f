"""Per-image and per-request bars (issue 17), each beside its floor measured in the same run.

    python benchmarks/per_request.py [--quick] [--runs 3] [--only small_ingest,small_ingest_s3,api_floor]

- ``small_ingest`` / ``small_ingest_s3``: 2,000 images of 256x256 uint16 (200 with --quick) to a folder
  store / to S3 (moto) through ``create_representations`` (batches of 100, two in flight), against a raw
  obstore put of each image's objects (its shard plus the small metadata objects mikro writes):
  images/s, client and server CPU per image. Beside the CPU targets, their floors from the same run: the
  raw put's own client CPU, and the CPU of writing the run's rows (store, representation, thumbnail)
  again with plain sqlite3 in a copy of the server's database, 32 images per transaction (the least a
  server spends on recording an image).
- ``api_floor``: ``get_representation`` x api_calls with api_concurrency in flight, and
  ``list_representations(limit=100)``, against a bare Starlette endpoint in the same server process
  running the same SQL, read the same way, and returning the rows as JSON (``MIKRO_BENCH_FLOOR``, see
  mikro/server/_bench_floor.py): requests/s, server CPU per call (/proc/<pid>/stat), client CPU per call.

Also registered in ``benchmarks/run.py``. The load average is printed with the setup: on a shared
machine compare figures of the same run only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _baselines as bl
import _mikro
import anyio
import numpy as np
from _context import Context, Sizes
from _harness import BarResult, Check, Figure, Sample, figure_from, interleave, timed
from _infra import MikroServer

__all__ = ["BARS", "bar_api_floor", "bar_small_ingest", "bar_small_ingest_s3"]

SMALL_SIDE = 256
#: Images per ``create_representations`` call, and calls in flight at once.
SMALL_BATCH = 100
SMALL_BATCHES_IN_FLIGHT = 2
LIST_LIMIT = 100
#: Representations the API bar reads (each with a sample, dataset, experiment and tags).
API_IMAGES = 120


def _small_count(ctx: Context) -> int:
    return 200 if ctx.sizes == Sizes.quick() else 2000


def _per_unit(fig: Figure, unit: str) -> None:
    client, server = fig.extra.get("client_cpu_ms"), fig.extra.get("server_cpu_ms")
    parts = [f"client CPU {client:.2f} ms/{unit}" if client is not None else ""]
    if server is not None:
        parts.append(f"server CPU {server:.2f} ms/{unit}")
    if fig.extra.get("sql_floor_ms") is not None:
        parts.append(f"its rows in plain sqlite3 {fig.extra['sql_floor_ms']:.2f} ms/{unit}")
    fig.note = "; ".join(p for p in parts if p)


def _ratio(text: str, mikro: Figure, floor: Figure, bound: float) -> Check:
    if mikro.value is None or not floor.value:
        return Check(text, None, "missing figure")
    r = mikro.value / floor.value
    return Check(text, r >= bound, f"{r:.2f}x {floor.contender} (≥ {bound})")


def _at_most(
    text: str, fig: Figure, key: str, bound: float, floor: tuple[str, float | None] | None = None
) -> Check:
    """``fig.extra[key] ≤ bound``; ``floor`` names the least that work costs, measured in the same run
    (a target below it cannot be met)."""
    got = fig.extra.get(key)
    if got is None:
        return Check(text, None, "missing figure")
    detail = f"{got:.2f} ms (≤ {bound})"
    if floor is not None and floor[1] is not None:
        detail += f"; floor: {floor[0]} {floor[1]:.2f} ms"
    return Check(text, got <= bound, detail)


# --- small images ------------------------------------------------------------------------------------


def _mikro_small(ctx: Context, kind: str, planes: np.ndarray) -> Sample:
    server = ctx.server(kind)
    tag = f"{time.monotonic_ns()}"

    async def main() -> tuple[Any, list[Any], float]:
        async with _mikro._connect(server) as m:
            limiter = anyio.CapacityLimiter(SMALL_BATCHES_IN_FLIGHT)
            reps: list[Any] = []

            async def batch(start: int) -> None:
                items = [
                    {"data": planes[i], "name": f"small-{tag}-{i}", "dims": ("y", "x"), "compression": None}
                    for i in range(start, min(start + SMALL_BATCH, len(planes)))
                ]
                async with limiter:
                    reps.extend(await m.create_representations(items))

            # Warm: the session's first image imports the pixel stack (seconds, once per process).
            reps += await m.create_representations([{"data": planes[0], "name": f"small-{tag}-warm"}])
            server0 = server.cpu_seconds()
            with timed() as clock:
                async with anyio.create_task_group() as tg:
                    for start in range(0, len(planes), SMALL_BATCH):
                        tg.start_soon(batch, start)
            return clock, reps, server.cpu_seconds() - server0

    clock, reps, server_cpu = anyio.run(main)
    sql_ms = _sql_floor_ms(server, [int(rep.id) for rep in reps])
    for rep in reps:
        _mikro._delete_objects(ctx, _mikro._stored(rep, kind))
    n = len(planes)
    extra = {"client_cpu_ms": clock.cpu / n * 1e3, "server_cpu_ms": server_cpu / n * 1e3}
    if sql_ms is not None:
        extra["sql_floor_ms"] = sql_ms
    return Sample(clock.seconds, clock.cpu, value=n / clock.seconds, extra=extra)


#: Each image's rows, table by table, as the server writes them: its store (reserved, then finished),
#: its representation and its thumbnail.
_SQL_FLOOR_TABLES = (("stores", "id"), ("representations", "id"), ("thumbnails", "representation_id"))


def _sql_floor_ms(server: MikroServer, rep_ids: list[int]) -> float | None:
    """CPU ms per image of writing the run's own rows again with plain sqlite3, in transactions of the
    client's request size (32 images): the least any server spends on them, in a copy of its database."""
    import sqlite3

    source = server.data_dir / "mikro.sqlite3"
    if not source.exists() or not rep_ids:
        return None
    copy = server.data_dir.with_name(server.data_dir.name + "-sql-floor.sqlite3")
    with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    db = sqlite3.connect(copy, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        marks = ",".join("?" * len(rep_ids))
        stores = [
            r[0] for r in db.execute(f"SELECT store_id FROM representations WHERE id IN ({marks})", rep_ids)
        ]
        keys = {"stores": stores, "representations": rep_ids, "thumbnails": rep_ids}
        rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table, column in _SQL_FLOOR_TABLES:
            ids = keys[table]
            found = db.execute(f"SELECT * FROM {table} WHERE {column} IN ({','.join('?' * len(ids))})", ids)
            rows[table] = ([d[0] for d in found.description], found.fetchall())
        db.execute("PRAGMA foreign_keys=OFF")
        for table, column in reversed(_SQL_FLOOR_TABLES):
            ids = keys[table]
            db.execute(f"DELETE FROM {table} WHERE {column} IN ({','.join('?' * len(ids))})", ids)
        batch = 32
        with timed() as clock:
            for start in range(0, len(rep_ids), batch):
                db.execute("BEGIN IMMEDIATE")
                for table, _ in _SQL_FLOOR_TABLES:
                    names, values = rows[table]
                    part = values[start : start + batch]
                    statement = (
                        f"INSERT INTO {table} ({','.join(names)}) VALUES ({','.join('?' * len(names))})"
                    )
                    db.executemany(statement, part)
                db.execute("COMMIT")
        return clock.cpu / len(rep_ids) * 1e3
    finally:
        db.close()
        copy.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(copy) + suffix).unlink(missing_ok=True)


def _raw_small(ctx: Context, kind: str, planes: np.ndarray) -> Sample:
    if kind == "local":
        root = Path(tempfile.mkdtemp(prefix="small-raw-", dir=ctx.workdir))
        with timed() as clock:
            bl.raw_put_image_objects(bl.LocalStore(root, mkdir=True), "raw", planes)
        bl.rmtree(root)
    else:
        # Unsigned bodies, as mikro's client sends them.
        store = bl.s3_store(ctx.moto, ctx.bucket("bench-small"), unsigned_payload=True)
        prefix = f"small-{time.monotonic_ns()}"
        with timed() as clock:
            bl.raw_put_image_objects(store, prefix, planes)
        bl.wipe(store, prefix)
    n = len(planes)
    return Sample(
        clock.seconds, clock.cpu, value=n / clock.seconds, extra={"client_cpu_ms": clock.cpu / n * 1e3}
    )


def _small_ingest(ctx: Context, kind: str) -> BarResult:
    n = _small_count(ctx)
    planes = ctx.planes("small", n, SMALL_SIDE)
    got = interleave(
        {
            "mikro": lambda: _mikro_small(ctx, kind, planes),
            "raw put, + each image's small objects": lambda: _raw_small(ctx, kind, planes),
        },
        ctx.runs,
        log=ctx.log,
    )
    figs = [
        figure_from(name, "mikro" if name == "mikro" else "baseline", samples, unit="images/s", value=_value)
        for name, samples in got.items()
    ]
    for fig in figs:
        _per_unit(fig, "image")
    mikro, floor = figs
    if kind == "local":
        name, where, target = (
            "small_ingest",
            "a folder store",
            "≥ 0.33x floor; client and server CPU ≤ 0.5 ms/image",
        )
        checks = [
            _ratio("≥ 0.33x floor", mikro, floor, 0.33),
            _at_most(
                "client CPU ≤ 0.5 ms/image",
                mikro,
                "client_cpu_ms",
                0.5,
                ("the raw put alone", floor.extra.get("client_cpu_ms")),
            ),
            _at_most(
                "server CPU ≤ 0.5 ms/image",
                mikro,
                "server_cpu_ms",
                0.5,
                ("its rows written with plain sqlite3", mikro.extra.get("sql_floor_ms")),
            ),
        ]
    else:
        name, where, target = "small_ingest_s3", "S3 (moto)", "≥ 0.85x floor"
        checks = [_ratio("≥ 0.85x floor", mikro, floor, 0.85)]
    return BarResult(
        name,
        f"{n} images of {SMALL_SIDE}x{SMALL_SIDE} uint16 to {where}",
        f"create_representations of {SMALL_BATCH} images, {SMALL_BATCHES_IN_FLIGHT} calls in flight, "
        "no compression, thumbnails on; "
        f"floor: obstore put of each image's shard and small objects, {bl.RAW_THREADS} threads",
        target,
        figs,
        checks,
    )


def bar_small_ingest(ctx: Context) -> BarResult:
    return _small_ingest(ctx, "local")


def bar_small_ingest_s3(ctx: Context) -> BarResult:
    return _small_ingest(ctx, "s3")


# --- requests against the web stack's floor ----------------------------------------------------------


def _value(sample: Sample) -> float:
    return sample.value or 0.0


async def _concurrently(n: int, in_flight: int, call: Callable[[], Awaitable[Any]]) -> None:
    limiter = anyio.CapacityLimiter(in_flight)

    async def one() -> None:
        async with limiter:
            await call()

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)


def _api_images(ctx: Context) -> list[str]:
    """Representation ids on the folder server, made once per run (with their relations)."""
    if "api_floor_ids" not in ctx.cache:
        server = ctx.server("local")

        async def main() -> list[str]:
            async with _mikro._connect(server) as m:
                sample = await m.create_sample(name="floor-sample")
                dataset = await m.create_dataset(name="floor-dataset")
                experiment = await m.create_experiment(name="floor-experiment")
                pixels = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
                ids: list[str] = []

                async def one(i: int) -> None:
                    rep = await m.create_representation(
                        pixels,
                        name=f"floor-{i}",
                        sample=sample.id,
                        dataset=dataset.id,
                        experiments=[experiment.id],
                        tags=["floor"],
                    )
                    ids.append(rep.id)

                async with anyio.create_task_group() as tg:
                    for i in range(API_IMAGES):
                        tg.start_soon(one, i)
                return sorted(ids, key=int)

        ctx.cache["api_floor_ids"] = anyio.run(main)
    ids = ctx.cache["api_floor_ids"]
    assert isinstance(ids, list)
    return ids


def _timed_calls(
    server: MikroServer, n: int, in_flight: int, make: Callable[[Any], Callable[[int], Awaitable[Any]]]
) -> Sample:
    """``n`` calls of ``make(session)(i)``, ``in_flight`` at once; req/s and CPU per call."""
    import httpx

    async def main() -> tuple[Any, float]:
        async with _mikro._connect(server) as m, httpx.AsyncClient(timeout=60.0) as client:
            call = make((m, client))
            await call(0)  # warm: connections, caches
            counter = iter(range(1, n + 1))
            server0 = server.cpu_seconds()
            with timed() as clock:
                await _concurrently(n, in_flight, lambda: call(next(counter)))
            return clock, server.cpu_seconds() - server0

    clock, server_cpu = anyio.run(main)
    return Sample(
        clock.seconds,
        clock.cpu,
        value=n / clock.seconds,
        extra={"client_cpu_ms": clock.cpu / n * 1e3, "server_cpu_ms": server_cpu / n * 1e3},
    )


def _floor_url(server: MikroServer, path: str) -> str:
    return server.url.removesuffix("/graphql") + "/bench-floor/" + path


def bar_api_floor(ctx: Context) -> BarResult:
    ids = _api_images(ctx)
    server = ctx.server("local")
    s = ctx.sizes
    n_get, n_list, conc = s.api_calls, max(20, s.api_calls // 10), s.api_concurrency

    def get_mikro(pair: Any) -> Callable[[int], Awaitable[Any]]:
        m, _ = pair
        return lambda i: m.get_representation(ids[i % len(ids)])

    def get_floor(pair: Any) -> Callable[[int], Awaitable[Any]]:
        _, client = pair

        async def call(i: int) -> None:
            r = await client.get(_floor_url(server, f"representation/{ids[i % len(ids)]}"))
            r.raise_for_status()
            r.json()

        return call

    def list_mikro(pair: Any) -> Callable[[int], Awaitable[Any]]:
        m, _ = pair
        return lambda i: m.list_representations(limit=LIST_LIMIT)

    def list_floor(pair: Any) -> Callable[[int], Awaitable[Any]]:
        _, client = pair

        async def call(i: int) -> None:
            r = await client.get(_floor_url(server, f"representations?limit={LIST_LIMIT}"))
            r.raise_for_status()
            r.json()

        return call

    contenders = {
        "mikro get_representation": lambda: _timed_calls(server, n_get, conc, get_mikro),
        "floor: same SQL, bare Starlette (get)": lambda: _timed_calls(server, n_get, conc, get_floor),
        f"mikro list_representations({LIST_LIMIT})": lambda: _timed_calls(server, n_list, conc, list_mikro),
        "floor: same SQL, bare Starlette (list)": lambda: _timed_calls(server, n_list, conc, list_floor),
    }
    got = interleave(contenders, ctx.runs, log=ctx.log)
    figs = [
        figure_from(
            name, "mikro" if name.startswith("mikro") else "baseline", samples, unit="req/s", value=_value
        )
        for name, samples in got.items()
    ]
    for fig in figs:
        _per_unit(fig, "call")
    get_m, get_f, list_m, list_f = figs
    return BarResult(
        "api_floor",
        f"get_representation x{n_get} and list_representations({LIST_LIMIT}) x{n_list}, {conc} in flight",
        f"folder-store server, SQLite, {len(ids)} representations with sample, dataset, experiment, tags "
        "and thumbnail; floor: GET endpoints in the same server process running the same statements "
        "(the resolvers' query builders), read the same way (Database.rows: a page's relations in one "
        "call), and returning JSON",
        "get and list ≥ 0.5x floor; get: server CPU ≤ 1.5 ms/call, client CPU ≤ 1 ms/call",
        figs,
        [
            _ratio("get ≥ 0.5x floor", get_m, get_f, 0.5),
            _at_most(
                "get server CPU ≤ 1.5 ms",
                get_m,
                "server_cpu_ms",
                1.5,
                ("the bare route", get_f.extra.get("server_cpu_ms")),
            ),
            _at_most(
                "get client CPU ≤ 1 ms",
                get_m,
                "client_cpu_ms",
                1.0,
                ("the bare route", get_f.extra.get("client_cpu_ms")),
            ),
            _ratio("list ≥ 0.5x floor", list_m, list_f, 0.5),
        ],
    )


BARS: dict[str, Callable[[Context], BarResult]] = {
    "small_ingest": bar_small_ingest,
    "small_ingest_s3": bar_small_ingest_s3,
    "api_floor": bar_api_floor,
}


if __name__ == "__main__":
    import run

    run.main_of(BARS)
