"""Import the pixel stack (dask, xarray) off the event loop before the first image is opened.

dask.array and xarray take 0.5 to 2 s to import. The datalayer imports them on first use so that the server
and plain metadata scripts never pay for them, but the first use is usually ``rep.data`` inside
``async def``, where the import would freeze the event loop (measured: 510 to 610 ms of heartbeat lag in a
fresh process, benchmarks/ ``loop_lag``). A session therefore starts importing them on a short-lived
daemon thread when it opens, and does not wait: a script that only handles metadata never pays for them.
The session waits (without blocking its loop) the first time an answer holds an image, whose ``.data``
would import them (:func:`holds_images`), and before it moves pixels: the loop never stalls on the import.

``distributed`` is imported too when it is installed: dask's first ``compute()`` in a process imports it
(to look for a running cluster), 150 modules that stalled the event loop about 50 ms in the middle of the
first ``await m.compute(rep.data.max())`` (measured here).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import threading
from typing import Any

import anyio

__all__ = ["holds_images", "import_pixel_stack", "pixel_stack_imported", "warm_up_in_background"]

log = logging.getLogger("mikro.datalayer")

_MODULES = ("dask.array", "xarray")
#: Imported by dask's first compute when installed (mikro does not depend on them).
_OPTIONAL_MODULES = ("distributed",)
_lock = threading.Lock()
_started = False
_done = threading.Event()


@functools.cache
def _modules() -> tuple[str, ...]:
    """The modules to import ahead: the pixel stack, and those of the optional ones that are installed."""
    optional = []
    for name in _OPTIONAL_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                optional.append(name)
        except (ImportError, ValueError):
            pass
    return (*_MODULES, *optional)


def _imported() -> bool:
    return all(name in sys.modules for name in _modules())


def pixel_stack_imported() -> bool:
    """Whether the warm-up is over (its imports done or failed): nothing left to wait for."""
    return _done.is_set() or _imported()


def _import_all() -> None:
    try:
        for name in _modules():
            try:
                importlib.import_module(name)
            except Exception as exc:  # a broken install shows up again, loudly, on first real use
                log.debug("warm-up import of %s failed: %s", name, exc)
    finally:
        _done.set()


def warm_up_in_background() -> None:
    """Start importing dask.array and xarray (and distributed) on a daemon thread, once per process."""
    global _started
    if _imported():
        return
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_import_all, name="mikro-warm-up", daemon=True).start()


async def import_pixel_stack() -> None:
    """Make sure dask.array and xarray are imported, without blocking the running loop.

    Polls a flag instead of using a worker thread of the loop's own (trio caches those for seconds after
    use): this happens once per process, for at most the import time.
    """
    if _imported():
        return
    warm_up_in_background()
    while not _done.is_set():  # noqa: ASYNC110 - set by a plain thread, which cannot set an anyio.Event
        await anyio.sleep(0.005)


def holds_images(answer: Any) -> bool:
    """Whether a GraphQL answer holds a Representation (an object with ``dims`` and a ``store``)."""
    if isinstance(answer, dict):
        if "dims" in answer and "store" in answer:
            return True
        return any(holds_images(value) for value in answer.values() if isinstance(value, dict | list))
    if isinstance(answer, list):
        return any(holds_images(value) for value in answer if isinstance(value, dict | list))
    return False
