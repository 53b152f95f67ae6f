"""Import the pixel stack (dask, xarray) off the event loop before the first image is opened.

dask.array and xarray take 0.5 to 2 s to import. The datalayer imports them on first use so that the server
and plain metadata scripts never pay for them, but the first use is usually ``rep.data`` inside
``async def``, where the import would freeze the event loop (measured: 510 to 610 ms of heartbeat lag in a
fresh process, benchmarks/ ``loop_lag``). A session therefore starts this import on a short-lived daemon
thread when it opens; by the time an image is opened the modules are in ``sys.modules``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading

__all__ = ["warm_up_in_background"]

log = logging.getLogger("mikro.datalayer")

_MODULES = ("dask.array", "xarray")
_lock = threading.Lock()
_started = False


def _import_all() -> None:
    for name in _MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken install shows up again, loudly, on first real use
            log.debug("warm-up import of %s failed: %s", name, exc)


def warm_up_in_background() -> None:
    """Start importing dask.array and xarray on a daemon thread, once per process."""
    global _started
    if all(name in sys.modules for name in _MODULES):
        return
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_import_all, name="mikro-warm-up", daemon=True).start()
