"""Keep the cyclic garbage collector from stalling the event loop during pixel work.

A full collection walks every tracked object; after importing numpy, xarray, dask, pandas and pydantic
that is a few million objects, so one collection holds the GIL for 50-200 ms. Dask graphs allocate
enough containers to trigger full collections while an image downloads, and the event loop, waiting for
the GIL, stalls for that long (measured here: worst heartbeat lag 90-180 ms without, under 20 ms with
the objects alive at start frozen). ``gc.freeze()`` moves the objects alive now (modules, classes,
caches: things that live as long as the process) into a permanent generation that collections skip.
Objects created later are collected as usual.
"""

from __future__ import annotations

import gc
import os
import threading

__all__ = ["freeze_startup_heap"]

_lock = threading.Lock()
_frozen = False


def freeze_startup_heap() -> bool:
    """``gc.freeze()`` once per process (set ``MIKRO_GC_FREEZE=0`` to opt out); True if it froze now."""
    global _frozen
    if os.environ.get("MIKRO_GC_FREEZE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    with _lock:
        if _frozen:
            return False
        _frozen = True
    gc.freeze()
    return True
