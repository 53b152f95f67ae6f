"""API bars: get_representation throughput vs bare httpx, sync facade overhead, threads left behind."""

from __future__ import annotations

from typing import Any

import _mikro
from _context import Context
from _harness import BarResult, Check, Figure, Sample, figure_from, interleave
from _read import read_image

__all__ = ["bar_api", "bar_sync", "bar_threads"]


def bar_api(ctx: Context) -> BarResult:
    img = read_image(ctx)
    s = ctx.sizes
    got = interleave(
        {
            "mikro get_representation": lambda: _mikro.get_many(ctx, img),
            "raw httpx.AsyncClient POST": lambda: _mikro.raw_get_many(ctx, img),
        },
        ctx.runs,
        log=ctx.log,
    )
    value = lambda x: x.value or 0.0  # noqa: E731
    mikro = figure_from(
        "mikro get_representation", "mikro", got["mikro get_representation"], unit="req/s", value=value
    )
    raw = figure_from(
        "raw httpx.AsyncClient POST", "baseline", got["raw httpx.AsyncClient POST"], unit="req/s", value=value
    )
    for fig in (mikro, raw):
        if "cpu_us_per_call" in fig.extra:
            fig.note = (
                f"CPU/call: client {fig.extra['cpu_us_per_call']:.0f} µs, "
                f"server {fig.extra['server_cpu_us_per_call']:.0f} µs"
            )
    if mikro.value is None or not raw.value:
        check = Check("≥ 0.85x raw", None, "missing figure")
    else:
        r = mikro.value / raw.value
        check = Check("≥ 0.85x raw", r >= 0.85, f"{r:.2f}x raw httpx (≥ 0.85)")
    return BarResult(
        "api",
        f"get_representation x{s.api_calls}, {s.api_concurrency} concurrent",
        f"{s.api_calls} calls, {s.api_concurrency} in flight, asyncio, same server and "
        "GetRepresentation document (with its fragments) for both; server in its own process",
        "≥ 0.85x raw",
        [mikro, raw],
        [check],
    )


def _sync_runs(ctx: Context) -> list[dict[str, Any]] | str:
    """The sync measurements, shared by the sync and threads bars (taken once per run)."""
    if "sync_runs" not in ctx.cache:
        img = read_image(ctx)
        got = interleave(
            {"sync facade": lambda: Sample(0.0, 0.0, extra=_mikro.sync_overhead(ctx, img))},
            ctx.runs,
            log=ctx.log,
        )["sync facade"]
        ctx.cache["sync_runs"] = got if isinstance(got, str) else [s.extra for s in got]
    runs = ctx.cache["sync_runs"]
    assert isinstance(runs, list | str)
    return runs


def bar_sync(ctx: Context) -> BarResult:
    import statistics

    runs = _sync_runs(ctx)
    s = ctx.sizes
    title = "sync facade overhead"
    setup = (
        f"{s.sync_calls} sequential calls through mikro.sync.connect(): half the blocking twin "
        "m.get_representation, half m.run(coroutine) (the portal hop every twin makes) timed outside and "
        "inside; overhead = outside - inside, median. Unpaired medians of the twin and of a plain async "
        "session's call shown beside it"
    )
    if isinstance(runs, str):
        err = Figure("mikro sync facade overhead", "mikro", "µs", None, error=runs)
        return BarResult(
            "sync", title, setup, "≤ 200 µs", [err], [Check("≤ 200 µs", None, runs)], ratio=False
        )
    overhead = [r["overhead_us"] for r in runs]
    fig = Figure("mikro sync facade overhead", "mikro", "µs", statistics.median(overhead), runs=overhead)
    fig.note = "per call, paired"
    sync = Figure("sync call", "baseline", "µs", statistics.median(r["sync_us"] for r in runs))
    asyn = Figure("async call", "baseline", "µs", statistics.median(r["async_us"] for r in runs))
    noop = Figure(
        "mikro m.run(noop)",
        "baseline",
        "µs",
        statistics.median(r["noop_us"] for r in runs),
        note="the facade's hop with no server call",
    )
    portal = Figure(
        "bare anyio portal.call(noop)",
        "baseline",
        "µs",
        statistics.median(r["portal_us"] for r in runs),
        note="anyio's portal, for comparison (mikro runs its own loop thread)",
    )
    value = fig.value or 0.0
    return BarResult(
        "sync",
        title,
        setup,
        "≤ 200 µs per call",
        [fig, noop, portal, sync, asyn],
        [Check("≤ 200 µs", value <= 200.0, f"{value:.0f} µs (≤ 200)")],
        ratio=False,
    )


def bar_threads(ctx: Context) -> BarResult:
    runs = _sync_runs(ctx)
    s = ctx.sizes
    title = f"threads after {s.sync_calls} sync calls"
    setup = "threading.active_count() before mikro.sync.connect() and after the session closed (5 s grace)"
    if isinstance(runs, str):
        err = Figure("after", "mikro", "threads", None, error=runs)
        return BarResult("threads", title, setup, "equal", [err], [Check("equal", None, runs)], ratio=False)
    after = Figure(
        "after", "mikro", "threads", float(runs[-1]["threads_after"]), runs=[r["threads_after"] for r in runs]
    )
    before = Figure("before", "baseline", "threads", float(runs[-1]["threads_before"]))
    during = Figure("while connected", "baseline", "threads", float(runs[-1]["threads_during"]))
    leaked = [r["threads_after"] - r["threads_before"] for r in runs]
    return BarResult(
        "threads",
        title,
        setup,
        "equal",
        [after, before, during],
        [Check("equal", all(x == 0 for x in leaked), f"after - before per run: {leaked}")],
        ratio=False,
    )
