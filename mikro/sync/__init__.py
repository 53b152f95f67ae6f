"""Blocking mikro for scripts and notebooks: the async session running on its own event loop thread.

.. code-block:: python

    from mikro.sync import connect

    with connect() as m:  # MIKRO_URL / MIKRO_TOKEN, a config file, or connect(url, token=...)
        rep = m.get_representation(107)
        peak = rep.data.max().compute()

Every method of :class:`mikro.Mikro` has a blocking twin on :class:`SyncMikro` (derived by
introspection, same signature). One anyio blocking portal (one thread) per session.
"""

from mikro.sync._current import current_sync_session
from mikro.sync._portal import Backend
from mikro.sync._session import SyncMikro, connect
from mikro.sync._streams import SyncContextManager, SyncIterator, SyncStream

__all__ = [
    "Backend",
    "SyncContextManager",
    "SyncIterator",
    "SyncMikro",
    "SyncStream",
    "connect",
    "current_sync_session",
]
