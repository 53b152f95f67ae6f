"""dask.distributed clusters of real worker processes on loopback, for tests that compute or ingest on one.

- ``local_cluster(workers, method=..., default=...)``: a LocalCluster and its Client, closed on exit.
- ``cluster`` (module): two spawned worker processes (obstore is not fork-safe), one thread each;
  not dask's default scheduler (the code under test is given it).
- ``default_cluster`` (module): one spawned worker, dask's default scheduler meanwhile (as
  ``Client(cluster)`` makes it in a user's script).
- ``forked_cluster`` (module): one worker forked from this process, which has used obstore.
- ``worker_store_count(client, "puts")``: what mikro's stores counted in the worker processes.

A cluster starts in seconds, so each module that asks for one shares it; ``distributed`` is imported only
by the tests that use these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["cluster", "default_cluster", "forked_cluster", "local_cluster", "worker_store_count"]


@contextlib.contextmanager
def local_cluster(
    workers: int, *, method: Literal["spawn", "fork"] = "spawn", default: bool = False
) -> Iterator[Client]:
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        # Loopback only, on free ports: dashboard_address=None would still bind the scheduler's HTTP
        # routes to port 8787, which concurrent runs would fight over.
        local = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=40,
        )
    client = Client(local, set_as_default=default)
    try:
        yield client
    finally:
        client.close()
        local.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    with local_cluster(2) as client:
        yield client


@pytest.fixture(scope="module")
def default_cluster() -> Iterator[Client]:
    with local_cluster(1, default=True) as client:
        yield client


@pytest.fixture(scope="module")
def forked_cluster() -> Iterator[Client]:
    with local_cluster(1, method="fork") as client:
        yield client


def _store_count(counter: str) -> int:
    from mikro.datalayer import _store

    with _store._rebuilt_lock:
        return sum(getattr(store.stats, counter) for store in _store._rebuilt.values())


def worker_store_count(client: Client, counter: Literal["gets", "puts"]) -> int:
    """Objects read or written so far by the stores the workers rebuilt from pickled tasks (summed over
    the worker processes)."""
    return sum(client.run(_store_count, counter).values())
