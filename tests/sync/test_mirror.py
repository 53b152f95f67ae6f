"""The sync facade is derived from the async session: every public method has a blocking twin."""

from __future__ import annotations

import inspect

import pytest

import mikro
from mikro.sync import SyncMikro
from mikro.sync._mirror import MethodKind, classify, public_methods

ASYNC_METHODS = public_methods(mikro.Mikro)
#: What the sync session has that the async one does not: its own lifecycle and an escape hatch.
SYNC_ONLY = {"async_session", "backend", "close", "closed", "run"}
#: Plain data attributes of the async session, declared on SyncMikro so that type checkers know them.
DATA_ATTRIBUTES = {"config"}


def test_the_async_session_has_operations_to_mirror() -> None:
    # Guards the parametrised tests below against passing vacuously on an empty list.
    assert {"get_representation", "list_samples", "iter_samples", "create_sample", "me"} <= set(ASYNC_METHODS)


@pytest.mark.parametrize("name", sorted(ASYNC_METHODS))
def test_every_public_async_method_has_a_sync_twin_with_the_same_signature(name: str) -> None:
    original = ASYNC_METHODS[name]
    twin = getattr(SyncMikro, name, None)
    assert twin is not None, f"SyncMikro lacks a blocking twin of Mikro.{name}"
    assert not inspect.iscoroutinefunction(twin) and not inspect.isasyncgenfunction(twin)
    want, got = inspect.signature(original), inspect.signature(twin)
    assert list(got.parameters.values()) == list(want.parameters.values())
    if classify(original) is MethodKind.COROUTINE:
        assert got.return_annotation == want.return_annotation
    else:
        # async iterators / async context managers come back as their blocking counterparts
        assert "Async" not in str(got.return_annotation)
    assert twin.__doc__ == original.__doc__
    assert twin.__name__ == name


#: `mikro.ingest` is the ingest sub-package (DESIGN.md), so that twin's module-level function is
#: only the async `mikro.aingest`; scripts call `m.ingest(...)` on their session.
NOT_MODULE_LEVEL = {"ingest"}


@pytest.mark.parametrize("name", sorted(set(ASYNC_METHODS) - NOT_MODULE_LEVEL))
def test_every_twin_has_a_module_level_function(name: str) -> None:
    function = getattr(mikro, name)
    assert name in mikro.__all__
    want = list(inspect.signature(getattr(SyncMikro, name)).parameters.values())[1:]
    assert list(inspect.signature(function).parameters.values()) == want
    assert function.__doc__ == ASYNC_METHODS[name].__doc__


def test_the_sync_session_adds_only_its_lifecycle() -> None:
    public = {n for n in dir(SyncMikro) if not n.startswith("_")}
    mirrored_properties = {
        n for n in dir(mikro.Mikro) if isinstance(inspect.getattr_static(mikro.Mikro, n), property)
    }
    assert public - set(ASYNC_METHODS) - mirrored_properties - DATA_ATTRIBUTES == SYNC_ONLY


def test_module_level_functions_outside_a_session_say_how_to_open_one() -> None:
    with pytest.raises(mikro.NotConnectedError, match="MikroApp"):
        mikro.get_representation("1")
