"""How an image was acquired (the OME data model's names): the ``acquisition`` of a Representation and
the input that sets it. Stored as one JSON column; every field is optional and unknown stays null."""

from __future__ import annotations

import dataclasses
from typing import Any

import strawberry

__all__ = [
    "Acquisition",
    "AcquisitionInput",
    "Instrument",
    "InstrumentInput",
    "Objective",
    "ObjectiveInput",
    "SourceMatch",
    "StagePosition",
    "StagePositionInput",
    "acquisition_from_value",
    "acquisition_value",
]


# The fields of each part, written once: its output type and its input both derive from them.


@dataclasses.dataclass
class _InstrumentFields:
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    type: str | None = None


@dataclasses.dataclass
class _ObjectiveFields:
    manufacturer: str | None = None
    model: str | None = None
    lens_na: float | None = strawberry.field(default=None, name="lensNA")
    nominal_magnification: float | None = None
    immersion: str | None = None
    correction: str | None = None


@dataclasses.dataclass
class _StagePositionFields:
    x: float | None = None
    y: float | None = None
    z: float | None = None


@strawberry.type(description="The microscope (OME Instrument/Microscope).")
class Instrument(_InstrumentFields):
    pass


@strawberry.type(description="The objective used (OME Objective; lensNA and nominalMagnification as OME).")
class Objective(_ObjectiveFields):
    pass


@strawberry.type(
    description="Stage position of the image's first plane in micrometres (OME Plane PositionX/Y/Z)."
)
class StagePosition(_StagePositionFields):
    pass


@strawberry.type(
    description="How the image was acquired, named as in the OME data model; unknown values are null. "
    "timeIncrement is in seconds (OME Pixels TimeIncrement)."
)
class Acquisition:
    instrument: Instrument | None = None
    objective: Objective | None = None
    stage_position: StagePosition | None = None
    time_increment: float | None = None


@strawberry.type(description="An image of the caller's ingested from a source file (see sourcesIngested).")
class SourceMatch:
    fingerprint: str
    scene: int | None
    scene_count: int | None
    representation: strawberry.ID


@strawberry.input
class InstrumentInput(_InstrumentFields):
    pass


@strawberry.input
class ObjectiveInput(_ObjectiveFields):
    pass


@strawberry.input
class StagePositionInput(_StagePositionFields):
    pass


@strawberry.input
class AcquisitionInput:
    instrument: InstrumentInput | None = None
    objective: ObjectiveInput | None = None
    stage_position: StagePositionInput | None = None
    time_increment: float | None = None


#: The nested objects of an acquisition: field name -> its output type.
_PARTS: dict[str, type[Any]] = {
    "instrument": Instrument,
    "objective": Objective,
    "stage_position": StagePosition,
}


def acquisition_value(value: AcquisitionInput | None) -> dict[str, Any] | None:
    """The JSON column's value of an input (None when nothing is known)."""
    if value is None:
        return None
    out: dict[str, Any] = {"time_increment": value.time_increment}
    for name in _PARTS:
        part = getattr(value, name)
        out[name] = None if part is None else dataclasses.asdict(part)
    return out if any(v is not None for v in out.values()) else None


def acquisition_from_value(value: dict[str, Any] | None) -> Acquisition | None:
    """The GraphQL object of a stored column value."""
    if not value:
        return None
    parts = {name: None if value.get(name) is None else kind(**value[name]) for name, kind in _PARTS.items()}
    return Acquisition(time_increment=value.get("time_increment"), **parts)
