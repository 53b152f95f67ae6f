"""The current session: set while ``async with mikro.connect():`` runs, read by module-level functions."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from mikro._exceptions import NotConnectedError

if TYPE_CHECKING:
    from mikro.client._mikro import Mikro

__all__ = ["current_session", "reset_current_session", "set_current_session"]

_current: contextvars.ContextVar[Mikro | None] = contextvars.ContextVar("mikro_current_session", default=None)


def current_session() -> Mikro:
    """The session of the innermost ``async with mikro.connect():`` around this task."""
    session = _current.get()
    if session is None:
        raise NotConnectedError(
            "no mikro session is active here: call this inside `async with mikro.connect() as m:` "
            "(or use the session's method, e.g. `await m.get_representation(...)`)"
        )
    return session


def set_current_session(session: Mikro | None) -> contextvars.Token[Mikro | None]:
    return _current.set(session)


def reset_current_session(token: contextvars.Token[Mikro | None], previous: Mikro | None) -> None:
    try:
        _current.reset(token)
    except ValueError:
        # The session is left from another context than it was entered in (e.g. a fixture's teardown
        # task): restore the value it replaced instead.
        _current.set(previous)
