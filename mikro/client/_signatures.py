"""A method that takes another function's arguments, spelled out once.

``create_representation`` accepts exactly :func:`~mikro.client._image_request.image_request`'s arguments
(the 24 keywords that describe one image). Writing them twice let the two lists drift; a dataclass or a
``TypedDict`` + ``Unpack`` would have changed the public signature users see (``help()``, the IDE, the
generated sync stub lose the defaults). :func:`takes_arguments_of` keeps the explicit list in one place
and gives the method that very signature, for type checkers (``ParamSpec``) and for ``inspect`` alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = ["takes_arguments_of"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def takes_arguments_of(
    source: Callable[P, object],
) -> Callable[
    [Callable[Concatenate[S, ...], Coroutine[Any, Any, R]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
]:
    """Decorate an async method written ``(self, *args, **kwargs)`` that passes its arguments on to
    ``source``: it then has ``source``'s parameters after ``self`` (and keeps its own return type)."""

    def decorate(
        method: Callable[Concatenate[S, ...], Coroutine[Any, Any, R]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
        own = inspect.signature(method)
        this = next(iter(own.parameters.values()))
        method.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[this, *inspect.signature(source).parameters.values()]
        )
        # Where the parameters' annotations are spelled (the sync stub resolves their names there).
        method.__wrapped__ = source  # type: ignore[attr-defined]
        return method

    return decorate
