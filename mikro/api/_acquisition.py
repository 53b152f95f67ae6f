"""Models of how an image was acquired (``Representation.acquisition``, OME data model names) and of
``sourcesIngested``'s answer. Unknown values are ``None``."""

from __future__ import annotations

from pydantic import Field

from mikro.api._base import MikroModel

__all__ = ["Acquisition", "Instrument", "Objective", "SourceMatch", "StagePosition"]


class Instrument(MikroModel):
    """The microscope (OME Instrument/Microscope)."""

    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    type: str | None = None


class Objective(MikroModel):
    """The objective (OME Objective)."""

    manufacturer: str | None = None
    model: str | None = None
    lens_na: float | None = Field(default=None, alias="lensNA")
    nominal_magnification: float | None = None
    immersion: str | None = None
    correction: str | None = None


class StagePosition(MikroModel):
    """Stage position of the image's first plane, in micrometres (OME Plane PositionX/Y/Z)."""

    x: float | None = None
    y: float | None = None
    z: float | None = None


class Acquisition(MikroModel):
    """How an image was acquired; ``time_increment`` in seconds (OME Pixels TimeIncrement)."""

    instrument: Instrument | None = None
    objective: Objective | None = None
    stage_position: StagePosition | None = None
    time_increment: float | None = None


class SourceMatch(MikroModel):
    """One of the caller's images ingested from a source file's scene."""

    fingerprint: str
    scene: int | None = None
    scene_count: int | None = None
    representation: str
