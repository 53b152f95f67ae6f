"""Loop lag as a fresh process sees it: `python _lag_child.py URL TOKEN REP_ID BACKEND` prints one JSON line.

A fresh process is what a user starts: whatever mikro first loads when `rep.data` is touched (dask,
xarray, ...) happens during the measured window, as it would in their program. Nothing but mikro and
anyio is imported before the heartbeat starts.
"""

from __future__ import annotations

import json
import sys
import time

import anyio

import mikro

PERIOD = 0.005


async def probe(url: str, token: str, rep_id: str) -> dict[str, float]:
    async with mikro.connect(url, token=token) as m:
        rep = await m.get_representation(rep_id)
        lags: list[float] = []
        stop = anyio.Event()

        async def heartbeat() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await anyio.sleep(PERIOD)
                lags.append(time.perf_counter() - t0 - PERIOD)

        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            await anyio.sleep(2 * PERIOD)
            lags.clear()
            t0 = time.perf_counter()
            await m.compute(rep.data)
            await m.compute(rep.data.max())
            seconds = time.perf_counter() - t0
            stop.set()
    return {"max_lag_ms": max(lags) * 1000 if lags else float("nan"), "beats": len(lags), "seconds": seconds}


def main() -> None:
    url, token, rep_id, backend = sys.argv[1:5]
    print(json.dumps(anyio.run(probe, url, token, rep_id, backend=backend)), flush=True)


if __name__ == "__main__":
    main()
