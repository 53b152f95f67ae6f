"""The fields of an OME-XML document that an image keeps, read with the standard library's ElementTree.

ome_types builds the whole OME data model (every element, validated pydantic models): 4-7 ms a file,
more than the rest of a small OME-TIFF's ingest. `_metadata.from_ome` reads a handful of fields; this
gives them under ome_types' attribute names (``images[i].pixels.physical_size_x``, ...), each value as
ome_types converts it (floats, a datetime, enum members as their text, the schema's default units where
the document names none), so ``from_ome`` reads either. Namespaces are ignored: every OME schema
version spells these elements and attributes alike.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from xml.etree import ElementTree

__all__ = ["parse_ome"]

#: The OME schema's units where a document names none: lengths in µm, time in s, wavelengths in nm,
#: positions in the stage's own "reference frame" (no physical unit: unknown).
_LENGTH, _TIME, _WAVELENGTH, _FRAME = "µm", "s", "nm", "reference frame"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next(iter(_children(element, name)), None)


def _number(element: ElementTree.Element | None, name: str) -> float | None:
    value = None if element is None else element.get(name)
    return None if value is None else float(value)


def _values(element: ElementTree.Element | None, fields: dict[str, str]) -> SimpleNamespace:
    """The attributes ``fields`` names ({attribute name in the model: in the XML}) as text, None if
    absent."""
    return SimpleNamespace(**{k: None if element is None else element.get(v) for k, v in fields.items()})


def _positions(element: ElementTree.Element | None, prefix: str, name: str) -> SimpleNamespace:
    """x/y/z and their units of a Plane (``Position``) or a StageLabel (no prefix)."""
    out: dict[str, Any] = {}
    for axis in "xyz":
        attribute = f"{prefix}{axis.upper()}"
        out[f"{name}{axis}"] = _number(element, attribute)
        out[f"{name}{axis}_unit"] = (
            element.get(f"{attribute}Unit") if element is not None else None
        ) or _FRAME
    return SimpleNamespace(**out)


def _ref(element: ElementTree.Element, name: str) -> SimpleNamespace | None:
    ref = _child(element, name)
    return None if ref is None else SimpleNamespace(id=ref.get("ID"))


def _pixels(element: ElementTree.Element | None) -> SimpleNamespace:
    out: dict[str, Any] = {}
    for axis in "xyz":
        out[f"physical_size_{axis}"] = _number(element, f"PhysicalSize{axis.upper()}")
        unit = None if element is None else element.get(f"PhysicalSize{axis.upper()}Unit")
        out[f"physical_size_{axis}_unit"] = unit or _LENGTH
    out["time_increment"] = _number(element, "TimeIncrement")
    out["time_increment_unit"] = (None if element is None else element.get("TimeIncrementUnit")) or _TIME
    channels = [] if element is None else _children(element, "Channel")
    out["channels"] = [
        SimpleNamespace(
            name=c.get("Name"),
            excitation_wavelength=_number(c, "ExcitationWavelength"),
            excitation_wavelength_unit=c.get("ExcitationWavelengthUnit") or _WAVELENGTH,
            emission_wavelength=_number(c, "EmissionWavelength"),
            emission_wavelength_unit=c.get("EmissionWavelengthUnit") or _WAVELENGTH,
        )
        for c in channels
    ]
    planes = [] if element is None else _children(element, "Plane")
    out["planes"] = [_positions(p, "Position", "position_") for p in planes[:1]]
    return SimpleNamespace(**out)


def _date(element: ElementTree.Element) -> dt.datetime | None:
    found = _child(element, "AcquisitionDate")
    text = None if found is None else (found.text or "").strip()
    return dt.datetime.fromisoformat(text) if text else None


def _image(element: ElementTree.Element) -> SimpleNamespace:
    label = _child(element, "StageLabel")
    return SimpleNamespace(
        id=element.get("ID"),
        name=element.get("Name"),
        acquisition_date=_date(element),
        instrument_ref=_ref(element, "InstrumentRef"),
        objective_settings=_ref(element, "ObjectiveSettings"),
        stage_label=None if label is None else _positions(label, "", ""),
        pixels=_pixels(_child(element, "Pixels")),
    )


def _instrument(element: ElementTree.Element) -> SimpleNamespace:
    microscope = _child(element, "Microscope")
    objective_fields = {
        "id": "ID",
        "manufacturer": "Manufacturer",
        "model": "Model",
        "immersion": "Immersion",
        "correction": "Correction",
    }
    objectives = []
    for o in _children(element, "Objective"):
        objective = _values(o, objective_fields)
        objective.lens_na = _number(o, "LensNA")
        objective.nominal_magnification = _number(o, "NominalMagnification")
        objectives.append(objective)
    return SimpleNamespace(
        id=element.get("ID"),
        microscope=None
        if microscope is None
        else _values(
            microscope,
            {
                "manufacturer": "Manufacturer",
                "model": "Model",
                "serial_number": "SerialNumber",
                "type": "Type",
            },
        ),
        objectives=objectives,
    )


def parse_ome(xml: str | bytes) -> SimpleNamespace:
    """The document's images and instruments (what `from_ome` reads); ValueError when it is no OME-XML."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not an XML document: {exc}") from exc
    if _local(root.tag) != "OME":
        raise ValueError(f"not an OME document: its root is {_local(root.tag)!r}")
    return SimpleNamespace(
        images=[_image(e) for e in _children(root, "Image")],
        instruments=[_instrument(e) for e in _children(root, "Instrument")],
    )
