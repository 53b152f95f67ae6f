"""Keep the cyclic garbage collector from stalling the event loop during pixel work.

A full collection walks every tracked object; after importing numpy, xarray, dask, pandas and pydantic
that is a few million objects, so one collection holds the GIL for 50-200 ms. Dask graphs allocate
enough containers to trigger full collections while an image downloads, and the event loop, waiting for
the GIL, stalls for that long (measured here: worst heartbeat lag 90-180 ms without, under 20 ms with
the objects alive at start frozen). ``gc.freeze()`` moves the objects alive now (modules, classes,
caches: things that live as long as the process) into a permanent generation that collections skip.
Objects created later are collected as usual; while pixels move (`full_collections_deferred`), only
young generations are, so objects accumulated since start-up cannot cause a long pause either.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_startup_heap", "full_collections_deferred"]

_lock = threading.Lock()
_frozen = False
_deferrals = 0
_saved_threshold: tuple[int, int, int] | None = None
#: A gen-2 threshold no workload reaches: full collections wait until the pixel work is over.
_NEVER = 1 << 30


def _enabled() -> bool:
    return os.environ.get("MIKRO_GC_FREEZE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def full_collections_deferred() -> Iterator[None]:
    """No full (generation 2) collection while inside; young generations are still collected.

    Re-entrant and thread-safe (the outermost exit restores the thresholds). Used around uploads and
    computes, whose dask graphs would otherwise trigger full collections that stall the event loop.
    """
    global _deferrals, _saved_threshold
    if not _enabled():
        yield
        return
    with _lock:
        if _deferrals == 0:
            _saved_threshold = gc.get_threshold()
            young, middle, _ = _saved_threshold
            if young:  # threshold 0 means the application disabled collection: leave it alone
                gc.set_threshold(young, middle, _NEVER)
        _deferrals += 1
    try:
        yield
    finally:
        with _lock:
            _deferrals -= 1
            if _deferrals == 0 and _saved_threshold is not None:
                if gc.get_threshold()[2] == _NEVER:
                    gc.set_threshold(*_saved_threshold)
                _saved_threshold = None


def freeze_startup_heap() -> bool:
    """``gc.freeze()`` once per process (set ``MIKRO_GC_FREEZE=0`` to opt out); True if it froze now."""
    global _frozen
    # Checked first: every data-plane call passes here (per image of a batch), the environment lookup
    # is the dearer test.
    if _frozen or not _enabled():
        return False
    with _lock:
        if _frozen:
            return False
        _frozen = True
    gc.freeze()
    return True
