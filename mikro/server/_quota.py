"""The per-user storage quota (``storage_quota_bytes``): bytes of finished arrays, uncompressed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mikro.server import _models as m
from mikro.server._errors import BadUserInput
from mikro.server._limits import limit_message
from mikro.server._settings import Settings
from mikro.server._zarr_meta import ArrayInfo

__all__ = ["check_quota"]


def _nbytes(shape: Sequence[Any], dtype: str) -> int:
    # Uncompressed: what the pixels are, whatever codec the client chose.
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def check_quota(session: Session, settings: Settings, user_id: int, adding: list[ArrayInfo]) -> None:
    """Refuse finishing ``adding`` if it would take the user past their quota (inside the finishing
    write transaction, so two concurrent finishes cannot both pass; synchronous: its job, see
    `Database.run_write`)."""
    quota = settings.storage_quota_bytes
    if quota is None or not adding:
        return
    finished = select(m.Store.shape, m.Store.dtype).where(
        m.Store.creator_id == user_id, m.Store.populated.is_(True), m.Store.dtype.is_not(None)
    )
    used = sum(_nbytes(shape, dtype) for shape, dtype in session.execute(finished).all() if shape)
    wanted = sum(_nbytes(array.shape, array.dtype) for array in adding)
    if used + wanted > quota:
        message = f"finishing this would store {used + wanted} bytes, over the quota of {quota}"
        raise BadUserInput(limit_message("storage_quota_bytes", message))
