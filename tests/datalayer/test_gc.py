"""Pixel work defers full garbage collections (they stall the event loop) and restores the settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mikro.datalayer import full_collections_deferred


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*saved)


def test_deferred_then_restored_even_when_nested(thresholds: tuple[int, int, int]) -> None:
    with full_collections_deferred():
        young, middle, full = gc.get_threshold()
        assert (young, middle) == thresholds[:2] and full > 10**6
        with full_collections_deferred():
            assert gc.get_threshold()[2] == full
        assert gc.get_threshold()[2] == full  # the outer deferral still holds
    assert gc.get_threshold() == thresholds


def test_disabled_collection_is_left_alone(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(0, 10, 10)
    with full_collections_deferred():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)


def test_opt_out_by_environment(thresholds: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIKRO_GC_FREEZE", "0")
    with full_collections_deferred():
        assert gc.get_threshold() == thresholds
