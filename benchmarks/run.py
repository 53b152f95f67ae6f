"""mikro's performance bars, each beside its baselines measured in the same run (issue 7).

    python benchmarks/run.py [--quick] [--runs 3] [--json out.json] [--only NAME[,NAME]]

Starts its own moto S3 server and `mikro serve` processes on loopback, runs every bar's contenders
interleaved (A,B,C,A,B,C,...), prints one table of medians with ratios, targets and PASS/MISS, and writes
the same as JSON. Client CPU is this process's own (`time.process_time()`): the servers are other processes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _api import bar_api, bar_sync, bar_threads
from _context import Context, Sizes
from _harness import MIB, BarResult, Check, Figure, describe_error, file_creation_cost
from _ingest import bar_ingest_codec, bar_ingest_local, bar_ingest_s3
from _read import bar_loop_lag, bar_read, bar_zplane
from _report import print_table, write_json
from per_request import BARS as PER_REQUEST_BARS
from read_folder import BARS as READ_FOLDER_BARS
from rich.console import Console

BARS: dict[str, Callable[[Context], BarResult]] = {
    "ingest_s3": bar_ingest_s3,
    "ingest_codec": bar_ingest_codec,
    "ingest_local": bar_ingest_local,
    "read": bar_read,
    "zplane": bar_zplane,
    "loop_lag": bar_loop_lag,
    "api": bar_api,
    "sync": bar_sync,
    "threads": bar_threads,
    **PER_REQUEST_BARS,
    **READ_FOLDER_BARS,
}

_PACKAGES = [
    "mikro",
    "numpy",
    "zarr",
    "obstore",
    "tensorstore",
    "s3fs",
    "moto",
    "httpx",
    "anyio",
    "trio",
    "dask",
]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _setup(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    return {
        "mode": "quick" if args.quick else "full",
        "runs": f"{args.runs} interleaved, medians reported",
        "ingest": f"{sizes.ingest_images} x {sizes.ingest_side}x{sizes.ingest_side} uint16 "
        f"({sizes.ingest_bytes / MIB:.0f} MiB), {sizes.ingest_concurrency} images in flight",
        "read image": f"{sizes.read_planes}x{sizes.read_side}x{sizes.read_side} uint16 "
        f"({sizes.read_bytes / MIB:.0f} MiB)",
        "z-plane image": f"{sizes.zplane_planes}x{sizes.zplane_side}x{sizes.zplane_side} uint16",
        "api": f"{sizes.api_calls} calls, {sizes.api_concurrency} concurrent; sync: {sizes.sync_calls} calls",
        "store": "moto S3 server (separate process, loopback) and a local folder",
        "data": "synthetic: smooth field + 6 bits of noise per pixel",
        "cores": f"{os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), load average at start "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "file system at start": file_creation_cost(Path(tempfile.gettempdir())),
        "python": platform.python_version(),
        "versions": ", ".join(f"{p} {_version(p)}" for p in _PACKAGES),
    }


def _failed_bar(name: str, exc: BaseException) -> BarResult:
    msg = describe_error(exc)
    return BarResult(
        name,
        name,
        "bar failed before measuring",
        "—",
        [Figure("mikro", "mikro", "", None, error=msg)],
        [Check("ran", None, msg)],
    )


def _fresh_json_path() -> Path:
    fd, name = tempfile.mkstemp(prefix="mikro-bench-", suffix=".json")
    os.close(fd)
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per bar (≥ 3 for a report)")
    parser.add_argument(
        "--json", type=Path, default=None, help="where to write the JSON (default: a temp file)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help=f"bars to run (repeat or comma-separate): {', '.join(BARS)}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs, data)")
    args = parser.parse_args(argv)
    only = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()] or list(BARS)
    unknown = [n for n in only if n not in BARS]
    if unknown:
        parser.error(f"unknown bar(s) {unknown}; choose from {list(BARS)}")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    setup = _setup(args, sizes)
    # A fresh file per run by default: two runs at once must not overwrite each other's figures.
    json_path = args.json or _fresh_json_path()
    workdir = Path(tempfile.mkdtemp(prefix="mikro-bench-"))
    bars: list[BarResult] = []

    def log(msg: str) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} {msg}", markup=False, highlight=False)

    try:
        with contextlib.ExitStack() as stack:
            ctx = Context(sizes=sizes, runs=args.runs, workdir=workdir, stack=stack, log=log)
            for name in only:
                log(f"bar {name}")
                try:
                    bars.append(BARS[name](ctx))
                except Exception as exc:
                    log(f"  bar {name} failed: {exc!r}\n{traceback.format_exc(limit=8)}")
                    bars.append(_failed_bar(name, exc))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(console, setup, bars)
    write_json(json_path, setup, bars)
    console.print(f"JSON written to {json_path}")
    return 0


def exit_now(code: int) -> NoReturn:
    """Leave with ``code`` once the output is flushed, without finalizers: zarr-python's ObjectStore uses
    obstore's async API, which made ~1 process in 10 abort at interpreter exit on this machine
    (shared/DESIGN.md), and everything is written by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main_of(bars: dict[str, Callable[[Context], BarResult]]) -> NoReturn:
    """A benchmark module's ``__main__``: only its ``bars``, with this runner's options and table."""
    BARS.clear()
    BARS.update(bars)
    exit_now(main())


if __name__ == "__main__":
    exit_now(main())
