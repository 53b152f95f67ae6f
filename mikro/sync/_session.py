"""The blocking session: ``mikro.sync.connect()`` and :class:`SyncMikro`, mirrored from ``mikro.Mikro``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from mikro._config import ClientConfig
from mikro._context import set_current_session
from mikro.client._mikro import Mikro
from mikro.client._mikro import connect as async_connect
from mikro.sync._current import enter_scope, exit_scope, register_open, unregister_open
from mikro.sync._mirror import mirror_methods, mirror_properties
from mikro.sync._portal import Backend, PortalRunner

__all__ = ["SyncMikro", "connect"]

if TYPE_CHECKING:
    # The twins are made at import time (below); type checkers read their generated signatures.
    from mikro.sync._typed import SyncMethods
else:
    SyncMethods = object

T = TypeVar("T")


class SyncMikro(SyncMethods):
    """A blocking mikro session: the async :class:`mikro.Mikro` running on its own event loop thread.

    Every public method of :class:`mikro.Mikro` has a twin here with the same name, signature, docstring
    and return value (the same models): ``m.get_representation(107)``, ``m.list_samples(limit=5)``,
    ``m.create_representation(arr, name="x")``. ``iter_*`` return blocking iterators; ``watch_*`` return
    context managers whose events are read with ``for ev in events`` (or ``events.receive(timeout=...)``).
    Open one with :func:`connect`; close it with ``with`` or :meth:`close`.

    Ctrl-C during a call cancels that call on the loop and leaves the session usable. Calling a blocking
    method from the session's own loop (e.g. an async callback passed to it) raises
    :class:`mikro.DeadlockError` instead of hanging.
    """

    def __init__(self, runner: PortalRunner, async_session: Mikro) -> None:
        self._runner = runner
        self._async_session = async_session
        self._scope_tokens: list[Any] = []

    @property
    def async_session(self) -> Mikro:
        """The async session underneath; await its methods only on this session's loop (:meth:`run`)."""
        return self._async_session

    @property
    def backend(self) -> Backend:
        """The event loop library the session's thread runs: ``"asyncio"`` or ``"trio"``."""
        return self._runner.backend

    @property
    def closed(self) -> bool:
        return self._runner.closed

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await func(*args)`` on this session's loop (where ``mikro.aget_*`` use this session)."""
        return self._runner.call(func, *args)

    def close(self) -> None:
        """Close the async session (its connections, its tasks) and stop the loop thread. Idempotent."""
        if self._runner.closed:
            return
        unregister_open(self)
        self._runner.close()

    def __enter__(self) -> SyncMikro:
        self._scope_tokens.append(enter_scope(self))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._scope_tokens:
            exit_scope(self._scope_tokens.pop())
        self.close()

    @property
    def config(self) -> ClientConfig:
        """The async session's settings (url, timeout, retries, ...)."""
        return self._async_session.config

    if not TYPE_CHECKING:  # so that a type checker reports a misspelt method instead of calling it Any

        def __getattr__(self, name: str) -> Any:
            # Only reached for names the class does not define: plain data attributes of the async session.
            if name.startswith("_"):
                raise AttributeError(name)
            try:
                value = getattr(self._async_session, name)
            except AttributeError:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None
            if not callable(value):
                return value
            raise AttributeError(f"{type(self).__name__} has no blocking twin of {name!r}")

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<SyncMikro {state} on {self.backend} for {self._async_session!r}>"


_OWN_NAMES = frozenset(name for name in vars(SyncMikro) if not name.startswith("_"))

for _name, _twin in mirror_methods(Mikro, qualname_prefix="SyncMikro").items():
    if _name not in _OWN_NAMES:
        setattr(SyncMikro, _name, _twin)
for _name, _prop in mirror_properties(Mikro).items():
    if _name not in _OWN_NAMES:
        setattr(SyncMikro, _name, _prop)


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    backend: Backend = "asyncio",
    backend_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> SyncMikro:
    """Open a blocking session; use it as ``with mikro.sync.connect() as m:`` (or call ``m.close()``).

    ``url``, ``token`` and ``kwargs`` are those of :func:`mikro.connect` (so configuration also comes
    from ``MIKRO_URL``/``MIKRO_TOKEN`` or a config file). ``backend`` picks the event loop library of
    the session's own thread (``"asyncio"`` or ``"trio"``); it does not matter to the caller, who may
    even be running another event loop in this thread (Jupyter).
    """
    runner = PortalRunner(backend, backend_options)
    try:
        entered = runner.wrap_async_context_manager(
            lambda: async_connect(url, token=token, **kwargs),
            owned=True,
        )
        async_session: Mikro = entered.__enter__()
        # Once, in the loop's base context that every later task copies: `await mikro.aget_*()` inside
        # `m.run(...)` (and callbacks run on the loop) find this session, with no per-call context work.
        runner.run_sync(set_current_session, async_session)
    except BaseException:
        runner.close()
        raise
    session = SyncMikro(runner, async_session)
    register_open(session)
    return session


def _connect_signature() -> inspect.Signature:
    # help(mikro.sync.connect) lists mikro.connect's own settings (timeout, retries, ...) too.
    own = inspect.signature(connect).parameters
    settings = [p for name, p in inspect.signature(async_connect).parameters.items() if name not in own]
    parameters = [*(p for p in own.values() if p.kind is not p.VAR_KEYWORD), *settings]
    parameters.sort(key=lambda p: p.kind)
    return inspect.Signature(parameters, return_annotation="SyncMikro")


connect.__signature__ = _connect_signature()  # type: ignore[attr-defined]
