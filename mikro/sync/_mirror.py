"""Derive blocking twins of an async class's public methods by introspection (never written twice).

For each public method of the async session class:

* ``async def`` → a blocking method running the coroutine on the portal;
* ``async def`` generator (``iter_*``) → a method returning a :class:`SyncIterator` (pumped on the loop);
* anything else (plain ``def``, e.g. ``watch_*`` returning an async context manager) → called on the loop
  and its result adapted: an async context manager becomes a :class:`SyncContextManager`, an async
  iterable a :class:`SyncIterator`, a coroutine is awaited; other values are returned as they are.

Each twin keeps the original's name, docstring and ``inspect.signature`` (async return annotations are
respelled with their sync counterparts).
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import enum
import functools
import inspect
import re
import typing
from collections.abc import AsyncIterable, Callable
from typing import Any, Protocol

from mikro.sync._streams import SyncContextManager, SyncIterator

__all__ = ["MethodKind", "SessionLike", "classify", "mirror_methods", "sync_signature"]


class SessionLike(Protocol):
    """What a generated twin needs from the sync session it is bound to."""

    @property
    def async_session(self) -> Any: ...

    @property
    def _runner(self) -> Any: ...


class MethodKind(enum.Enum):
    COROUTINE = "coroutine"
    ASYNC_ITERATOR = "async_iterator"
    OTHER = "other"


#: Names of the async session that the sync session replaces by its own lifecycle (``close``).
LIFECYCLE_NAMES = frozenset({"aclose", "close", "connect", "disconnect"})

_ASYNC_SPELLINGS = {
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncGenerator": "Generator",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncContextManager": "ContextManager",
}


def classify(func: Callable[..., Any]) -> MethodKind:
    if inspect.iscoroutinefunction(func):
        return MethodKind.COROUTINE
    if inspect.isasyncgenfunction(func):
        return MethodKind.ASYNC_ITERATOR
    return MethodKind.OTHER


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    """Public functions defined on ``cls`` or its bases (not properties, not lifecycle methods)."""
    found: dict[str, Callable[..., Any]] = {}
    for name in dir(cls):
        if name.startswith("_") or name in LIFECYCLE_NAMES:
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, staticmethod | classmethod | property) or not inspect.isfunction(raw):
            continue
        found[name] = raw
    return found


def public_properties(cls: type) -> dict[str, property]:
    return {
        name: raw
        for name in dir(cls)
        if not name.startswith("_") and isinstance(raw := inspect.getattr_static(cls, name), property)
    }


_ASYNC_ORIGINS: dict[Any, Any] = {
    cabc.AsyncIterator: cabc.Iterator,
    cabc.AsyncIterable: cabc.Iterable,
    cabc.AsyncGenerator: cabc.Generator,
    contextlib.AbstractAsyncContextManager: contextlib.AbstractContextManager,
}


def _respell(annotation: Any) -> Any:
    if not isinstance(annotation, str):
        sync_origin = _ASYNC_ORIGINS.get(typing.get_origin(annotation))
        if sync_origin is None:
            return annotation
        return sync_origin[typing.get_args(annotation)]
    text = annotation
    for async_name, sync_name in _ASYNC_SPELLINGS.items():
        text = re.sub(rf"\b{async_name}\b", sync_name, text)
    return text


def _sync_spelling_of_async_class(func: Callable[..., Any]) -> str | None:
    # A plain method returning its own async context manager class (``watch_*`` -> ``Watch[E]``): the
    # twin returns a SyncContextManager whose ``with`` gives a SyncStream of the same events.
    try:
        resolved = typing.get_type_hints(func).get("return")
    except Exception:
        return None
    origin = typing.get_origin(resolved) or resolved
    if not isinstance(origin, type) or origin in _ASYNC_ORIGINS or not hasattr(origin, "__aenter__"):
        return None
    args = ", ".join(getattr(arg, "__name__", str(arg)) for arg in typing.get_args(resolved))
    return f"SyncContextManager[SyncStream[{args}]]" if args else "SyncContextManager[Any]"


def sync_signature(func: Callable[..., Any]) -> inspect.Signature:
    """The twin's signature: the same parameters; the return type respelled for sync iteration/``with``."""
    signature = inspect.signature(func)
    if classify(func) is MethodKind.COROUTINE:
        return signature
    respelled = _sync_spelling_of_async_class(func) or _respell(signature.return_annotation)
    return signature.replace(return_annotation=respelled)


def _adapt(session: SessionLike, value: Any) -> Any:
    blocking = getattr(value, "blocking", None)
    if callable(blocking):  # a handle with async methods and a blocking spelling (TableData)
        return blocking()
    if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
        return SyncContextManager(session._runner, lambda: value)
    if hasattr(value, "__aiter__"):
        return SyncIterator(session._runner, lambda: value)
    return value


async def _call_on_loop(bound: Callable[[], Any]) -> Any:
    # Plain methods run on the loop too: they may create anyio primitives or read the running backend.
    value = bound()
    if inspect.iscoroutine(value):
        return await value
    return value


def _twin(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    kind = classify(func)

    if kind is MethodKind.COROUTINE:

        def twin(self: SessionLike, /, *args: Any, **kwargs: Any) -> Any:
            return self._runner.call(functools.partial(getattr(self.async_session, name), *args, **kwargs))

    elif kind is MethodKind.ASYNC_ITERATOR:

        def twin(self: SessionLike, /, *args: Any, **kwargs: Any) -> Any:
            bound = getattr(self.async_session, name)
            make: Callable[[], AsyncIterable[Any]] = functools.partial(bound, *args, **kwargs)
            return SyncIterator(self._runner, make)

    else:

        def twin(self: SessionLike, /, *args: Any, **kwargs: Any) -> Any:
            bound = functools.partial(getattr(self.async_session, name), *args, **kwargs)
            value = self._runner.call(functools.partial(_call_on_loop, bound))
            return _adapt(self, value)

    twin.__name__ = name
    twin.__module__ = "mikro.sync"
    twin.__doc__ = func.__doc__
    twin.__signature__ = sync_signature(func)  # type: ignore[attr-defined]
    return twin


def mirror_methods(async_cls: type, *, qualname_prefix: str) -> dict[str, Callable[..., Any]]:
    """One blocking twin per public method of ``async_cls``, keyed by name."""
    twins: dict[str, Callable[..., Any]] = {}
    for name, func in public_methods(async_cls).items():
        twin = _twin(name, func)
        twin.__qualname__ = f"{qualname_prefix}.{name}"
        twins[name] = twin
    return twins


def mirror_properties(async_cls: type) -> dict[str, property]:
    """Read-only pass-through properties (``m.url`` ...) for the async class's public properties."""

    def make(name: str, prop: property) -> property:
        def get(self: SessionLike) -> Any:
            return getattr(self.async_session, name)

        return property(get, doc=prop.__doc__)

    return {name: make(name, prop) for name, prop in public_properties(async_cls).items()}
