"""The garbage collector of a server process, tuned once the server has started.

A response is many small containers (one dict per object, one list per list field): a list of 100
images allocates ~10^5 of them, and CPython's default thresholds then run a young collection every
700 allocations and a full one, which walks every object of the process (the schema, SQLAlchemy's
and strawberry's tables, the modules), every 100 young ones. Measured with ``gc.callbacks`` on
``list_representations(100)``: a third of the server's CPU was the collector (issue 17). After
startup, ``gc.freeze()`` moves everything alive into a generation collections do not walk, and a
larger young threshold collects less often; reference cycles made while serving are still collected.
"""

from __future__ import annotations

import gc

__all__ = ["settle_heap"]

#: Allocations between two young collections (CPython's default is 700).
YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """Call once, when the server has started serving."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
