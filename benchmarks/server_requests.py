"""Server CPU and SQL statements per GraphQL request, by request type (issue 7: the fixed cost of a request).

Starts ``mikro serve`` (folder store, SQLite) in its own process, with SQLAlchemy listeners that count
statements and connection checkouts, and sends N requests of each type the way the client sends them
(its own documents; mutations with an ``Idempotency-Key``), ``--concurrency`` in flight. Reports the
server's CPU ms per request (``/proc/<pid>/stat``; "loop" is the main thread alone) and statements /
connection checkouts per request.

    python benchmarks/server_requests.py [-n 500] [--concurrency 8] [--json out.json] [--show-sql]

The fixed cost of a mutation: ``createRepresentations`` and ``createFiles`` of 1 and of 64 inputs
(``--sizes``), per request. ``--only REGEX`` measures only the phases it finds (the others still run a
few calls: later phases use what they make); ``--profile DIR`` records py-spy per phase
(``BENCH_PY_SPY_ARGS=--gil`` adds its options), ``--cprofile DIR`` a cProfile of the event loop's
thread in CPU time, whose call counts show what a request does once too often:

    python benchmarks/server_requests.py -n 300 --only "per request" --cprofile /tmp/prof --concurrency 1

Compare source trees (e.g. ``git archive HEAD | tar -x -C /tmp/before``), interleaved, medians of runs;
each measurement runs in a child process with ``PYTHONPATH=<tree>`` (server and client documents alike):

    python benchmarks/server_requests.py --compare /tmp/before /work/main --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

# Appended, not prepended: with PYTHONPATH=<tree>, `mikro` must come from that tree.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks._infra import process_cpu_seconds

# Runs inside the server process: count statements and checkouts, dump them on SIGUSR1.
_BOOTSTRAP = r"""
import signal, sys, json
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool
counts = {"statements": 0, "checkouts": 0, "begins": 0, "connects": 0}
recent = []
def _stmt(conn, cursor, statement, *a, **k):
    counts["statements"] += 1
    recent.append(" ".join(statement.split())[:160])
    del recent[:-200]
def _checkout(*a, **k): counts["checkouts"] += 1
def _begin(*a, **k): counts["begins"] += 1
def _connect(*a, **k): counts["connects"] += 1
event.listen(Pool, "connect", _connect)
event.listen(Engine, "before_cursor_execute", _stmt)
event.listen(Engine, "begin", _begin)
event.listen(Pool, "checkout", _checkout)
_target = sys.argv.pop()  # the last argument is where to dump; the CLI never sees it
import mikro
def _dump(*_):
    with open(_target, "w") as f:
        json.dump({**counts, "recent": list(recent), "mikro": mikro.__file__}, f)
    recent.clear()
signal.signal(signal.SIGUSR1, _dump)
# SIGUSR2 starts a cProfile of the main thread (the event loop), the next one writes it where
# the counters go, plus ".prof": call counts show what a request does once too often.
import cProfile
_profiler = None
def _toggle(*_):
    global _profiler
    if _profiler is None:
        import time
        _profiler = cProfile.Profile(time.thread_time)  # CPU, not the time spent waiting
        _profiler.enable()
    else:
        _profiler.disable()
        _profiler.dump_stats(_target + ".prof")
        _profiler = None
signal.signal(signal.SIGUSR2, _toggle)
# Statements the server runs on SQLite's read threads without SQLAlchemy's execution (reused ones, see
# mikro/server/_sqlite.py) fire no engine event: count them where they run (trees without it: nothing).
import mikro.server._sqlite as _sqlite
_Plan = getattr(_sqlite, "_Plan", None)
if _Plan is not None:
    _plan_run = _Plan.run
    def _counted(self, connection, params):
        _stmt(None, None, str(self.compiled))
        return _plan_run(self, connection, params)
    _Plan.run = _counted
from mikro.cli import main
main()
"""

_LISTENING = re.compile(rb"listening on (http://\S+/graphql)")
TOKEN = "bench-admin-token"


class Server:
    def __init__(self, workdir: Path) -> None:
        self.data_dir = workdir / "data"
        self.counts_file = workdir / "counts.json"
        log = workdir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
        env.update(MIKRO_ADMIN_TOKEN=TOKEN, MIKRO_LOG_LEVEL="warning")
        command = [sys.executable, "-c", _BOOTSTRAP, "serve", "--data-dir", str(self.data_dir)]
        command += ["--host", "127.0.0.1", "--port", "0", str(self.counts_file)]
        self._log = log.open("wb")
        # Not in a source tree: `python -c` puts the working directory first on sys.path.
        self.proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
        deadline = time.monotonic() + 90
        while True:
            match = _LISTENING.search(log.read_bytes())
            if match:
                self.url = match.group(1).decode()
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.05)

    def cpu(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def loop_cpu(self) -> float:
        """CPU of the main thread alone (the event loop), from /proc/<pid>/task/<pid>/stat."""
        stat = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def counts(self) -> dict[str, Any]:
        self.counts_file.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        for _ in range(200):
            if self.counts_file.exists():
                try:
                    return dict(json.loads(self.counts_file.read_text()))
                except ValueError:
                    pass
            time.sleep(0.01)
        raise RuntimeError("the server did not dump its counters")

    def move_profile(self, to: Path) -> None:
        """Waits for the server's cProfile dump and moves it ``to``."""
        dump = Path(f"{self.counts_file}.prof")
        for _ in range(500):
            if dump.exists():
                time.sleep(0.2)  # written in full
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(dump, to)
                return
            time.sleep(0.01)
        raise RuntimeError("the server did not dump its profile")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _doc(name: str) -> str:
    from mikro.api._documents import operation

    return operation(name).document


#: Images per createRepresentations request in the batch phase (about what 8 uploads in flight make).
BATCH = 8


def _zarr_json(shape: list[int], dims: list[str]) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": "uint16",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        # One shard of one chunk, the layout mikro writes (and the only one its server accepts).
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": shape,
                    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ],
        "attributes": {},
        "dimension_names": dims,
    }


def _thumbnail_png(height: int, width: int) -> str:
    """Base64 of the thumbnail mikro makes of a noisy ``height x width`` uint16 image."""
    import base64

    import numpy as np

    from mikro.datalayer import make_thumbnail

    pixels = np.random.default_rng(0).integers(0, 4000, (height, width), dtype=np.uint16)
    return base64.b64encode(make_thumbnail(pixels).png).decode("ascii")


async def _post(client: httpx.AsyncClient, url: str, name: str, variables: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    document = _doc(name)
    if document.lstrip().startswith("mutation") and os.environ.get("BENCH_NO_KEY") != "1":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    response = await client.post(url, json={"query": document, "variables": variables}, headers=headers)
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"{name}: {response.status_code} {body}")
    return dict(body["data"])


async def _reserve(
    client: httpx.AsyncClient, url: str, kind: str, count: int, content: bytes | None = None
) -> Any:
    """An iterator over ``count`` reserved stores of ``kind``; with ``content``, each store's file."""
    ids: list[str] = []
    while len(ids) < count:
        grants = await _post(
            client, url, "RequestUploads", {"count": min(64, count - len(ids)), "kind": kind}
        )
        for grant in grants["requestUploads"]:
            if content is not None:
                path = Path(grant["path"])
                path.mkdir(parents=True, exist_ok=True)
                (path / "file").write_bytes(content)
            ids.append(grant["storeId"])
    return iter(ids)


async def _run_all(n: int, calls: Callable[[int], Awaitable[Any]], concurrency: int) -> None:
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            await calls(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    # Without --gil: its holder detection lags behind hand-offs to worker threads, charging their work to
    # the loop's line that woke them; a thread waiting for the GIL is idle, and not sampled anyway.
    command = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "1000", "--threads"]
    command += os.environ.get("BENCH_PY_SPY_ARGS", "").split()
    command += ["--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def measure(
    n: int,
    concurrency: int,
    workdir: Path,
    profile: Path | None = None,
    show_sql: bool = False,
    cprofile: Path | None = None,
    sizes: tuple[int, ...] = (1, 64),
    only: str | None = None,
) -> dict[str, dict[str, float]]:
    server = Server(workdir)
    results: dict[str, dict[str, float]] = {}
    try:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
            url = server.url
            print(f"server: {server.url}, mikro from {server.counts()['mikro']}", flush=True)

            async def phase(
                label: str, call: Callable[[int], Awaitable[Any]], per: int = 1, count: int = n
            ) -> None:
                """Measure ``count`` calls of ``call``; figures are per request, or per image when a request
                makes ``per``."""
                if only is not None and not re.search(only, label):
                    # Not measured, but run a little: later phases use what earlier ones made.
                    await _run_all(min(count, 20), call, concurrency)
                    return
                # Warm-up (parser/validation caches, pool), its last request alone, to show its SQL.
                await _run_all(min(count, 20) - 1, call, concurrency)
                server.counts()
                await call(count + 1000)
                if show_sql:
                    print(f"--- {label}: the SQL of one request")
                    for statement in server.counts()["recent"]:
                        print("   ", statement)
                spy = None
                if profile is not None:
                    profile.mkdir(parents=True, exist_ok=True)
                    name = re.sub(r"\W+", "_", label).strip("_")
                    spy = _py_spy(server.proc.pid, profile / f"{name}.txt")
                    await asyncio.sleep(1.0)  # py-spy attaches
                if cprofile is not None:
                    server.proc.send_signal(signal.SIGUSR2)
                c0, l0, k0, t0 = server.cpu(), server.loop_cpu(), server.counts(), time.perf_counter()
                await _run_all(count, call, concurrency)
                c1, l1, k1, t1 = server.cpu(), server.loop_cpu(), server.counts(), time.perf_counter()
                if cprofile is not None:
                    name = re.sub(r"\W+", "_", label).strip("_")
                    server.proc.send_signal(signal.SIGUSR2)
                    server.move_profile(cprofile / f"{name}.prof")
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                units = count * per
                results[label] = {
                    "cpu_ms": (c1 - c0) / units * 1000,
                    "loop_cpu_ms": (l1 - l0) / units * 1000,
                    "wall_ms": (t1 - t0) / units * 1000,
                    **{key: (k1[key] - k0[key]) / units for key in k0 if key not in ("recent", "mikro")},
                }
                r = results[label]
                print(
                    f"{label:22} {r['cpu_ms']:6.2f} ms CPU ({r['loop_cpu_ms']:5.2f} loop) "
                    f"{r['statements']:5.1f} stmts {r['checkouts']:4.1f} checkouts "
                    f"{r['connects']:4.2f} new connections  wall {r['wall_ms']:.2f} ms",
                    flush=True,
                )

            # Representations to read, with a dataset, a sample, tags and an experiment.
            sample = (await _post(client, url, "CreateSample", {"input": {"name": "s"}}))["createSample"][
                "id"
            ]
            dataset = (await _post(client, url, "CreateDataset", {"input": {"name": "d"}}))["createDataset"][
                "id"
            ]
            experiment = (await _post(client, url, "CreateExperiment", {"input": {"name": "e"}}))[
                "createExperiment"
            ]["id"]

            stores: list[str] = []

            async def request_upload(_: int) -> None:
                grant = (await _post(client, url, "RequestUpload", {"kind": "ZARR"}))["requestUpload"]
                path = Path(grant["path"])
                path.mkdir(parents=True, exist_ok=True)
                (path / "zarr.json").write_text(json.dumps(_zarr_json([64, 64], ["y", "x"])))
                stores.append(grant["storeId"])

            await phase("requestUpload", request_upload)
            finished = iter(list(stores))

            async def finish_upload(_: int) -> None:
                await _post(client, url, "FinishUpload", {"store": next(finished)})

            await phase("finishUpload", finish_upload)
            to_use = iter(list(stores))
            reps: list[str] = []

            async def create_representation(i: int) -> None:
                rep_input = {
                    "store": next(to_use),
                    "name": f"image-{i}",
                    "dataset": dataset,
                    "sample": sample,
                    "experiments": [experiment],
                    "tags": ["bench"],
                }
                rep = await _post(client, url, "CreateRepresentation", {"input": rep_input})
                reps.append(rep["createRepresentation"]["id"])

            await phase("createRepresentation", create_representation)

            # The client's ingest path: unfinished stores, arrayMetadata sent, BATCH images per request.
            metadata = json.dumps(_zarr_json([64, 64], ["y", "x"]))
            # The thumbnail travels with the registration, as the client sends it: a real PNG of the image.
            thumbnail = {"png": _thumbnail_png(64, 64)}
            fresh: list[str] = []
            while len(fresh) < (n + 21) * BATCH:
                grants = await _post(client, url, "RequestUploads", {"count": 64, "kind": "ZARR"})
                fresh += [g["storeId"] for g in grants["requestUploads"]]
            unused = iter(fresh)

            async def create_batch(i: int) -> None:
                inputs = [
                    {
                        "store": next(unused),
                        "name": f"batch-{i}-{j}",
                        "tags": ["bench"],
                        "arrayMetadata": metadata,
                        "thumbnail": thumbnail,
                    }
                    for j in range(BATCH)
                ]
                await _post(client, url, "CreateRepresentations", {"inputs": inputs})

            await phase(f"createRepresentations/{BATCH} (per image)", create_batch, per=BATCH)

            # The fixed cost of a mutation: a batch of one against a batch of 64, images and files alike.
            # Fewer requests of 64: the phase reserves (and the server checks) as many stores as it makes.
            for size in sizes:
                count = max(10, n // size)
                stores_for = await _reserve(client, url, "ZARR", (count + 21) * size)

                async def create_reps(i: int, size: int = size, stores_for: Any = stores_for) -> None:
                    inputs = [
                        {
                            "store": next(stores_for),
                            "name": f"batch-{i}-{j}",
                            "tags": ["bench"],
                            "arrayMetadata": metadata,
                            "thumbnail": thumbnail,
                        }
                        for j in range(size)
                    ]
                    await _post(client, url, "CreateRepresentations", {"inputs": inputs})

                await phase(f"createRepresentations/{size} (per request)", create_reps, count=count)

            content = b"x" * 1000
            content_hash = "blake3:" + "ab" * 32
            # createFiles takes at most 64 files per request.
            for size in sorted({min(size, 64) for size in sizes}):
                count = max(10, n // size)
                media = await _reserve(client, url, "MEDIA", (count + 21) * size, content)

                async def create_files(i: int, size: int = size, media: Any = media) -> None:
                    inputs = [
                        {
                            "store": next(media),
                            "name": f"f-{i}-{j}",
                            "size": len(content),
                            "contentHash": content_hash,
                            "tags": ["bench"],
                        }
                        for j in range(size)
                    ]
                    await _post(client, url, "CreateFileRecords", {"inputs": inputs})

                await phase(f"createFiles/{size} (per request)", create_files, count=count)

            async def trivial(_: int) -> None:
                await _post(client, url, "Me", {})

            await phase("trivial query (me)", trivial)

            async def get_representation(i: int) -> None:
                await _post(client, url, "GetRepresentation", {"id": reps[i % len(reps)]})

            await phase("getRepresentation", get_representation)

            async def list_representations(_: int) -> None:
                await _post(client, url, "ListRepresentations", {"pagination": {"limit": 100}})

            # A page of 100 images with their relations: a fifth as many requests.
            await phase("listRepresentations(100)", list_representations, count=max(20, n // 5))
    finally:
        server.stop()
    return results


_COLUMNS = ("cpu_ms", "loop_cpu_ms", "statements", "checkouts")


def _one_run(tree: Path, n: int, concurrency: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, __file__, "-n", str(n), "--concurrency", str(concurrency)]
        subprocess.run([*command, "--json", str(out)], env=env, check=True, cwd=tmp)
        return dict(json.loads(out.read_text()))


def _compare(trees: list[Path], runs: int, n: int, concurrency: int) -> dict[str, Any]:
    import statistics

    measured: dict[str, list[dict[str, dict[str, float]]]] = {str(t): [] for t in trees}
    for run in range(runs):
        for tree in trees:  # interleaved, so that a noisy minute hits every tree alike
            print(f"== run {run + 1}/{runs}: {tree}", flush=True)
            measured[str(tree)].append(_one_run(tree, n, concurrency))
    medians = {
        tree: {
            label: {c: statistics.median(r[label][c] for r in results) for c in _COLUMNS}
            for label in results[0]
        }
        for tree, results in measured.items()
    }
    names = list(medians)
    print(f"\nmedians of {runs} interleaved runs, n={n} per request type, {concurrency} in flight")
    header = "| request | " + " | ".join(f"{t}: CPU ms (loop) / stmts / checkouts" for t in names) + " |"
    print(header)
    print("|---" * (len(names) + 1) + "|")
    for label in medians[names[0]]:
        cells = [
            f"{m[label]['cpu_ms']:.2f} ({m[label]['loop_cpu_ms']:.2f}) / {m[label]['statements']:.0f} / "
            f"{m[label]['checkouts']:.0f}"
            for m in (medians[t] for t in names)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return {"runs": measured, "medians": medians}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--show-sql", action="store_true", help="print the SQL of one request per type")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw profiles per phase, here")
    parser.add_argument(
        "--cprofile", type=Path, default=None, help="cProfile dumps of the event loop per phase, here"
    )
    parser.add_argument("--compare", type=Path, nargs="+", default=None, help="source trees to compare")
    parser.add_argument("--runs", type=int, default=3, help="runs per tree with --compare")
    parser.add_argument("--only", default=None, help="measure only the phases this regex finds")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 64], help="batch sizes of the fixed-cost phases"
    )
    args = parser.parse_args()
    if args.compare:
        report = _compare(args.compare, args.runs, args.n, args.concurrency)
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2))
        return
    workdir = Path(tempfile.mkdtemp(prefix="mikro-server-requests-"))
    try:
        results = asyncio.run(
            measure(
                args.n,
                args.concurrency,
                workdir,
                args.profile,
                args.show_sql,
                args.cprofile,
                tuple(args.sizes),
                args.only,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
