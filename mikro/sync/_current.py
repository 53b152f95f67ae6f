"""Which sync session the module-level functions (``mikro.get_representation`` ...) use.

Lookup order: the session of the innermost ``with`` block in this thread/context, else the most
recently opened sync session of the process that is still open (so ``app.connect()`` in one notebook
cell serves the next cells, and worker threads of a script see the script's session), else
``NotConnectedError``.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

import sniffio

from mikro._exceptions import NotConnectedError

if TYPE_CHECKING:
    from mikro.sync._session import SyncMikro

__all__ = ["current_sync_session", "enter_scope", "exit_scope", "register_open", "unregister_open"]

_scoped: contextvars.ContextVar[SyncMikro | None] = contextvars.ContextVar("mikro_sync_session", default=None)
_open: list[SyncMikro] = []
_lock = threading.Lock()


def current_sync_session() -> SyncMikro:
    """The sync session module-level functions use here (see the module docstring)."""
    session = _scoped.get()
    if session is not None and not session.closed:
        return session
    with _lock:
        for candidate in reversed(_open):
            if not candidate.closed:
                return candidate
    raise NotConnectedError(_not_connected_message())


def _not_connected_message() -> str:
    message = (
        "no sync mikro session is open: use `with mikro.MikroApp():` (or `app.connect()`), or "
        "`with mikro.sync.connect() as m:`"
    )
    library = _running_async_library()
    if library is None:
        return message
    return (
        f"{message}. This code runs inside {library}: inside `async with app:` or "
        "`async with mikro.connect():` use the async functions, e.g. `await mikro.aget_representation(...)`"
    )


def _running_async_library() -> str | None:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


def register_open(session: SyncMikro) -> None:
    with _lock:
        _open.append(session)


def unregister_open(session: SyncMikro) -> None:
    with _lock:
        if session in _open:
            _open.remove(session)


def enter_scope(session: SyncMikro) -> contextvars.Token[SyncMikro | None]:
    return _scoped.set(session)


def exit_scope(token: contextvars.Token[SyncMikro | None]) -> None:
    try:
        _scoped.reset(token)
    except ValueError:
        # Left in another context than entered (e.g. a generator finalised elsewhere): just clear it.
        _scoped.set(None)
