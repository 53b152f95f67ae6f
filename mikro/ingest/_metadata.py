"""The metadata an image keeps from its file: channels, pixel sizes, acquisition (OME data model names).

Three sources, best first: the file's OME metadata (OME-TIFF, and other bioio readers that give it), the
reader's own values (bioio's channel names and pixel sizes, in micrometres by bioio's convention), and for
plain and ImageJ TIFFs the tags tifffile reads. A value nobody knows stays None: bioio's placeholder channel
names (``Channel:0:1``) and tifffile's default resolution (1 pixel per unit of "no unit") are not values.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from mikro.api import Acquisition, Instrument, Objective, StagePosition
from mikro.ingest._units import micrometres, nanometres, seconds

__all__ = ["SceneMetadata", "from_ome", "from_reader", "from_tiff_tags", "real_channel_names"]

#: bioio's made-up names for channels a file does not name.
_PLACEHOLDER = re.compile(r"^Channel:[^:]*:\d+$|^Channel:\d+$")
#: TIFF ResolutionUnit -> micrometres per unit (1 = no unit: the resolution means nothing physical).
_RESOLUTION_UNITS = {2: 25400.0, 3: 10000.0}


@dataclass
class SceneMetadata:
    """What is known about one scene; every field may be unknown."""

    channel_names: list[str | None] = field(default_factory=list)
    excitation: list[float | None] = field(default_factory=list)
    emission: list[float | None] = field(default_factory=list)
    #: Micrometres per pixel for x/y/z, seconds per time point for t.
    pixel_size: dict[str, float] = field(default_factory=dict)
    acquisition_date: dt.datetime | None = None
    acquisition: Acquisition | None = None

    def channels(self, count: int) -> list[dict[str, Any]] | None:
        """The channel inputs of an image with ``count`` channels (None when nothing is known)."""
        names = self.channel_names if len(self.channel_names) == count else [None] * count
        ex = self.excitation if len(self.excitation) == count else [None] * count
        em = self.emission if len(self.emission) == count else [None] * count
        rows = [
            {"name": n, "excitation_wavelength": x, "emission_wavelength": e}
            for n, x, e in zip(names, ex, em, strict=True)
        ]
        return rows if any(v is not None for row in rows for v in row.values()) else None


def real_channel_names(names: Any) -> list[str | None]:
    return [None if n is None or _PLACEHOLDER.match(str(n)) else str(n) for n in (names or [])]


def _present(model: Any) -> Any:
    """``model`` unless all its fields are None."""
    if model is None or all(v is None for v in model.model_dump().values()):
        return None
    return model


def _enum_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(getattr(value, "value", value))
    return text or None


def from_ome(ome: Any, index: int) -> SceneMetadata:
    """The metadata of image ``index`` of an ``ome_types.OME`` document."""
    images = list(ome.images)
    image = images[index] if index < len(images) else images[0]
    pixels = image.pixels
    meta = SceneMetadata()
    for dim in ("x", "y", "z"):
        size = micrometres(
            getattr(pixels, f"physical_size_{dim}"), getattr(pixels, f"physical_size_{dim}_unit")
        )
        if size is not None:
            meta.pixel_size[dim] = size
    increment = seconds(pixels.time_increment, pixels.time_increment_unit)
    if increment is not None:
        meta.pixel_size["t"] = increment
    meta.channel_names = real_channel_names([c.name for c in pixels.channels])
    meta.excitation = [
        nanometres(c.excitation_wavelength, c.excitation_wavelength_unit) for c in pixels.channels
    ]
    meta.emission = [nanometres(c.emission_wavelength, c.emission_wavelength_unit) for c in pixels.channels]
    meta.acquisition_date = image.acquisition_date
    instruments = list(ome.instruments)
    instrument = next(
        (i for i in instruments if image.instrument_ref and i.id == image.instrument_ref.id), None
    )
    microscope = instrument.microscope if instrument is not None else None
    objective = None
    if image.objective_settings is not None:
        wanted = image.objective_settings.id
        objective = next((o for i in instruments for o in i.objectives if o.id == wanted), None)
    plane = pixels.planes[0] if pixels.planes else None
    stage = None
    if plane is not None:
        stage = StagePosition(
            x=micrometres(plane.position_x, plane.position_x_unit),
            y=micrometres(plane.position_y, plane.position_y_unit),
            z=micrometres(plane.position_z, plane.position_z_unit),
        )
    if _present(stage) is None and image.stage_label is not None:
        label = image.stage_label
        stage = StagePosition(
            x=micrometres(label.x, label.x_unit),
            y=micrometres(label.y, label.y_unit),
            z=micrometres(label.z, label.z_unit),
        )
    acquisition = Acquisition(
        instrument=_present(
            None
            if microscope is None
            else Instrument(
                manufacturer=microscope.manufacturer,
                model=microscope.model,
                serial_number=microscope.serial_number,
                type=_enum_text(microscope.type),
            )
        ),
        objective=_present(
            None
            if objective is None
            else Objective(
                manufacturer=objective.manufacturer,
                model=objective.model,
                lens_na=objective.lens_na,
                nominal_magnification=objective.nominal_magnification,
                immersion=_enum_text(objective.immersion),
                correction=_enum_text(objective.correction),
            )
        ),
        stage_position=_present(stage),
        time_increment=increment,
    )
    meta.acquisition = _present(acquisition)
    return meta


def from_reader(img: Any) -> SceneMetadata:
    """What a bioio image tells without OME metadata (its readers give micrometres and seconds)."""
    meta = SceneMetadata(channel_names=real_channel_names(img.channel_names))
    sizes = img.physical_pixel_sizes
    for dim in ("x", "y", "z"):
        value = getattr(sizes, dim.upper())
        if value is not None:
            meta.pixel_size[dim] = float(value)
    standard = _standard(img)
    interval = getattr(standard, "timelapse_interval", None)
    if isinstance(interval, dt.timedelta):
        meta.pixel_size["t"] = interval.total_seconds()
    meta.acquisition_date = getattr(standard, "imaging_datetime", None)
    objective = getattr(standard, "objective", None)
    stage = StagePosition(
        x=getattr(standard, "stage_position_x", None), y=getattr(standard, "stage_position_y", None)
    )
    meta.acquisition = _present(
        Acquisition(
            objective=Objective(model=str(objective)) if objective else None,
            stage_position=_present(stage),
            time_increment=meta.pixel_size.get("t"),
        )
    )
    return meta


def _standard(img: Any) -> Any:
    try:
        return img.standard_metadata
    except Exception:
        # A reader whose metadata cannot be summarised still has pixels: no standard metadata then.
        return None


def from_tiff_tags(tif: Any, series: int) -> SceneMetadata:
    """Pixel sizes and time interval of a plain or ImageJ TIFF (an open ``tifffile.TiffFile``), from the
    tags tifffile reads."""
    meta = SceneMetadata()
    imagej = tif.imagej_metadata or {}
    page = tif.series[series].keyframe
    tags = page.tags
    x_res, y_res, unit_tag = tags.get("XResolution"), tags.get("YResolution"), tags.get("ResolutionUnit")
    per_unit: float | None = None
    if imagej.get("unit"):
        per_unit = micrometres(1.0, imagej["unit"])
    elif unit_tag is not None:
        per_unit = _RESOLUTION_UNITS.get(int(unit_tag.value))
    for dim, tag in (("x", x_res), ("y", y_res)):
        if per_unit is None or tag is None:
            continue
        numerator, denominator = tag.value
        if numerator:
            meta.pixel_size[dim] = per_unit * denominator / numerator
    if per_unit is not None and imagej.get("spacing"):
        meta.pixel_size["z"] = float(imagej["spacing"]) * per_unit
    interval = seconds(imagej.get("finterval") or None, imagej.get("tunit") or "s")
    if interval:
        meta.pixel_size["t"] = interval
    if "t" in meta.pixel_size:
        meta.acquisition = Acquisition(time_increment=meta.pixel_size["t"])
    return meta
