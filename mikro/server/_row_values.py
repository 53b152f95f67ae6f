"""Column values from mutation inputs, shared by every mutation that writes rows: names, channels,
physical sizes, the ids of objects the caller owns, and link-table rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession

from mikro.server._auth import AuthUser
from mikro.server._crud import get_owned
from mikro.server._errors import BadUserInput
from mikro.server._inputs import ChannelInput, PhysicalSizeInput

__all__ = ["channel_values", "checked_name", "owned_ids", "physical_values", "set_links"]


def checked_name(value: str) -> str:
    if not value.strip():
        raise BadUserInput("name must not be empty")
    return value


def channel_values(channels: list[ChannelInput]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "emission_wavelength": c.emission_wavelength,
            "excitation_wavelength": c.excitation_wavelength,
            "color": c.color,
        }
        for c in channels
    ]


def physical_values(size: PhysicalSizeInput | None) -> dict[str, Any] | None:
    if size is None:
        return None
    return {"x": size.x, "y": size.y, "z": size.z, "t": size.t}


async def owned_ids(session: AsyncSession, model: type[Any], raw_ids: list[Any], user: AuthUser) -> list[int]:
    ids: list[int] = []
    for raw in dict.fromkeys(raw_ids):
        ids.append((await get_owned(session, model, raw, user)).id)
    return ids


async def set_links(
    session: AsyncSession,
    table: Any,
    left: str,
    left_id: int,
    right: str,
    ids: list[int],
    *,
    new: bool = False,
) -> None:
    """Make ``ids`` the links of ``left_id`` (``new``: its row was made in this transaction, no links yet)."""
    if not new:
        await session.execute(delete(table).where(table.c[left] == left_id))
    if ids:
        await session.execute(insert(table), [{left: left_id, right: i} for i in ids])
