# mypy: warn-unused-ignores
"""Checked by mypy (``files`` in pyproject), never run: ``create_representation`` takes ``image_request``'s
arguments (``mikro.client._signatures``), and type checkers see them as keywords with their types.

An ignore that is no longer needed is an error here, so a call that type checkers stopped rejecting (the
signature seen as ``*args: Any``) turns CI red as surely as one they started rejecting.
"""

from __future__ import annotations

from typing import assert_type

import numpy as np

import mikro
from mikro.sync import SyncMikro


async def the_keywords_are_checked(m: mikro.Mikro) -> None:
    image = np.zeros((4, 4), dtype="uint8")
    assert_type(await m.create_representation(image, name="a", variety="MASK"), mikro.Representation)
    await m.create_representation(image, name=3)  # type: ignore[arg-type]
    await m.create_representation(image, name="a", pyramids=2)  # type: ignore[call-arg]
    await m.create_representation(image)  # type: ignore[call-arg]


def the_blocking_twin_too(m: SyncMikro) -> None:
    image = np.zeros((4, 4), dtype="uint8")
    assert_type(m.create_representation(image, name="a", pyramid=None), mikro.Representation)
    m.create_representation(image, name="a", pyramids=2)  # type: ignore[call-arg]
