"""The upstream spelling: ``MikroApp`` and module-level blocking functions (``mikro.get_representation``).

.. code-block:: python

    from mikro import MikroApp, get_representation, aget_representation

    app = MikroApp()            # configured like mikro.connect(): arguments, environment, config file
    with app:                   # or: app.connect(); ...; app.disconnect()
        g = get_representation(107)
        g.data.max().compute()

    async with app:             # inside asyncio or trio
        g = await aget_representation(107)

The module-level functions are generated from :class:`mikro.sync.SyncMikro` (itself mirrored from
:class:`mikro.Mikro`): one per session method, same name and signature minus ``self``, calling it on
the current sync session (:func:`mikro.sync.current_sync_session`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from mikro._exceptions import NotConnectedError
from mikro.client._mikro import Mikro
from mikro.client._mikro import connect as async_connect
from mikro.sync._current import current_sync_session, enter_scope, exit_scope
from mikro.sync._mirror import public_methods
from mikro.sync._portal import Backend
from mikro.sync._session import SyncMikro
from mikro.sync._session import connect as sync_connect

__all__ = ["SYNC_FUNCTIONS", "MikroApp"]


class MikroApp:
    """A configured way to reach a mikro server, connected synchronously or asynchronously.

    ``with app:`` / ``app.connect()`` open a blocking session on its own loop thread (module-level
    ``get_representation(...)`` etc. then use it); ``async with app:`` opens an async session in the
    running asyncio or trio loop (module-level ``await aget_representation(...)`` then use it).
    ``app.disconnect()`` closes the blocking session and stops its thread; a forgotten one is closed at
    interpreter exit.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        backend: Backend = "asyncio",
        **connect_kwargs: Any,
    ) -> None:
        self.url = url
        self._token = token
        self.backend: Backend = backend
        self._connect_kwargs = connect_kwargs
        self._session: SyncMikro | None = None
        self._scope_tokens: list[Any] = []
        self._async_cms: list[AbstractAsyncContextManager[Mikro]] = []
        self._async_session: Mikro | None = None

    @property
    def session(self) -> SyncMikro:
        """The open blocking session (``NotConnectedError`` when there is none)."""
        if self._session is None or self._session.closed:
            raise NotConnectedError("this MikroApp is not connected: use `with app:` or `app.connect()`")
        return self._session

    @property
    def async_session(self) -> Mikro:
        """The async session of the innermost ``async with app:`` (``NotConnectedError`` outside one)."""
        if self._async_session is None:
            raise NotConnectedError("this MikroApp has no async session: use `async with app:`")
        return self._async_session

    @property
    def connected(self) -> bool:
        return self._session is not None and not self._session.closed

    def connect(self) -> SyncMikro:
        """Open the blocking session (if not open yet) and make it the current one; returns it."""
        if not self.connected:
            self._session = sync_connect(
                self.url, token=self._token, backend=self.backend, **self._connect_kwargs
            )
        return self.session

    def disconnect(self) -> None:
        """Close the blocking session and stop its loop thread (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __enter__(self) -> MikroApp:
        session = self.connect()
        self._scope_tokens.append(enter_scope(session))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._scope_tokens:
            exit_scope(self._scope_tokens.pop())
        self.disconnect()

    async def __aenter__(self) -> MikroApp:
        cm = async_connect(self.url, token=self._token, **self._connect_kwargs)
        session = await cm.__aenter__()
        self._async_cms.append(cm)
        self._async_session = session
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        cm = self._async_cms.pop()
        self._async_session = None
        return await cm.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<MikroApp url={self.url!r} connected={self.connected}>"


def _module_function(name: str) -> Callable[..., Any]:
    def function(*args: Any, **kwargs: Any) -> Any:
        return getattr(current_sync_session(), name)(*args, **kwargs)

    twin = getattr(SyncMikro, name)
    signature = inspect.signature(twin)
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    function.__name__ = function.__qualname__ = name
    function.__doc__ = twin.__doc__
    function.__module__ = "mikro"
    return function


#: ``mikro.get_representation`` & co: one blocking function per mirrored session method.
SYNC_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: _module_function(name) for name in sorted(public_methods(Mikro)) if hasattr(SyncMikro, name)
}
