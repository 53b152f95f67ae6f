"""Units as microscope files spell them (OME enums, OME-Zarr axis units, ImageJ's ``unit``), converted to
the units mikro stores: micrometres for space, seconds for time, nanometres for wavelengths."""

from __future__ import annotations

from typing import Any

__all__ = ["micrometres", "nanometres", "seconds"]

_METRE_PREFIXES = {
    "p": 1e-6,
    "n": 1e-3,
    "µ": 1.0,
    "u": 1.0,
    "m": 1e3,
    "c": 1e4,
    "d": 1e5,
    "": 1e6,
    "k": 1e9,
}
_LENGTH_WORDS = {
    "picometer": 1e-6,
    "angstrom": 1e-4,
    "Å": 1e-4,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "\\u00b5m": 1.0,  # ImageJ writes the micro sign escaped
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
    "inch": 25400.0,
}
#: Every spelling of a length unit -> micrometres per unit.
LENGTH = {**{f"{p}m": f for p, f in _METRE_PREFIXES.items()}, "μm": 1.0, **_LENGTH_WORDS}
#: Every spelling of a time unit -> seconds per unit.
TIME = {
    "ns": 1e-9,
    "nanosecond": 1e-9,
    "µs": 1e-6,
    "us": 1e-6,
    "microsecond": 1e-6,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def _unit_name(unit: Any) -> str | None:
    if unit is None:
        return None
    name = str(getattr(unit, "value", unit)).strip()
    return name.lower() if name.lower() in LENGTH or name.lower() in TIME else name


def _convert(
    value: Any, unit: Any, table: dict[str, float], default: str, scale: float = 1.0
) -> float | None:
    if value is None:
        return None
    name = _unit_name(unit) or default
    factor = table.get(name)
    if factor is None:
        return None  # a unit we cannot convert: unknown, rather than a wrong number
    return float(value) * factor / scale


def micrometres(value: Any, unit: Any = None, *, default: str = "µm") -> float | None:
    """``value`` in ``unit`` (default ``default``) as micrometres; None when unknown."""
    return _convert(value, unit, LENGTH, default)


def nanometres(value: Any, unit: Any = None) -> float | None:
    """A wavelength in nanometres (OME's default unit for wavelengths is nm)."""
    return _convert(value, unit, LENGTH, "nm", scale=1e-3)


def seconds(value: Any, unit: Any = None) -> float | None:
    """A time in seconds (OME's default unit for time is s)."""
    return _convert(value, unit, TIME, "s")
