"""Checked by mypy (``files`` in pyproject), never run: the blocking facade's methods are typed.

``assert_type`` fails the type check when an expression's type is not exactly the one named, so a twin
that type checkers saw as ``Any`` (or as missing) turns CI red.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import assert_type

import mikro
from mikro.sync import SyncContextManager, SyncMikro, SyncStream


def blocking_calls_are_typed(m: SyncMikro) -> None:
    assert_type(m.get_representation("1"), mikro.Representation)
    assert_type(m.list_samples(limit=5), list[mikro.Sample])
    assert_type(m.iter_datasets(), Iterator[mikro.Dataset])
    assert_type(m.watch_rois("1"), SyncContextManager[SyncStream[mikro.RoiEvent]])
    assert_type(m.me(), mikro.User)
    assert_type(m.config.timeout, float)
    assert_type(m.closed, bool)


def sessions_are_typed() -> None:
    with mikro.sync.connect() as m:
        assert_type(m, SyncMikro)
