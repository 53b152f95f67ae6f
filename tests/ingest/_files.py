"""Microscope files written by tools that are not mikro: tifffile, ngff-zarr, ome-zarr-py, pylibCZIrw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

# At import, not inside a test: ome_types imports pint, which imports dask. Imported on a test's
# event loop it would race the session's background import of dask (mikro.datalayer._warmup), and
# Python's import locks then hand one of the two threads a half-initialised dask.
from ome_types import model as om

OME_CHANNELS = ["DAPI", "GFP", "mCherry"]


def values(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(dtype)


def small_tiffs(folder: Path, count: int) -> None:
    """``count`` plain 16 x 16 TIFFs (``img000.tif`` ...) in ``folder``, each with its own pixels."""
    folder.mkdir(exist_ok=True)
    for i in range(count):
        tifffile.imwrite(folder / f"img{i:03d}.tif", values((16, 16), seed=i), photometric="minisblack")


def broken_tiff(path: Path, fill: int = 7) -> None:
    """A TIFF header and then garbage: every reader refuses it (``fill`` makes each one a distinct file)."""
    path.write_bytes(b"II*\x00" + bytes([fill]) * 200)


def ome_tiff(path: Path, seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Two series: a z-stack of three named channels (pixel sizes in nm and µm, wavelengths, a 2 s time
    increment, a microscope, an objective and a stage position in OME-XML written with ome-types), and a
    single plane. Pixels written by tifffile."""
    stack = values((2, 3, 40, 30), seed=seed)  # z, c, y, x
    plane = values((24, 20), "uint8", seed=seed + 1)
    objective = om.Objective(
        id="Objective:0",
        model="Plan-Apo 63x",
        manufacturer="Zeiss",
        lens_na=1.4,
        nominal_magnification=63.0,
        immersion="Oil",
    )
    instrument = om.Instrument(
        id="Instrument:0",
        microscope=om.Microscope(manufacturer="Zeiss", model="LSM 980"),
        objectives=[objective],
    )
    channels = [
        om.Channel(
            id=f"Channel:0:{i}",
            name=name,
            samples_per_pixel=1,
            excitation_wavelength=ex,
            emission_wavelength=em,
        )
        for i, (name, ex, em) in enumerate(
            zip(OME_CHANNELS, [358.0, 488.0, 587.0], [461.0, 510.0, 610.0], strict=True)
        )
    ]
    first = om.Image(
        id="Image:0",
        name="stack",
        acquisition_date="2024-05-06T07:08:09",
        instrument_ref=om.InstrumentRef(id="Instrument:0"),
        objective_settings=om.ObjectiveSettings(id="Objective:0"),
        pixels=om.Pixels(
            id="Pixels:0",
            dimension_order="XYCZT",
            type="uint16",
            size_x=30,
            size_y=40,
            size_c=3,
            size_z=2,
            size_t=1,
            physical_size_x=250.0,
            physical_size_x_unit="nm",
            physical_size_y=250.0,
            physical_size_y_unit="nm",
            physical_size_z=1.5,
            physical_size_z_unit="µm",
            time_increment=2.0,
            channels=channels,
            tiff_data_blocks=[om.TiffData(ifd=0, plane_count=6)],
            planes=[
                om.Plane(
                    the_c=0,
                    the_z=0,
                    the_t=0,
                    position_x=1.5,
                    position_y=2.5,
                    position_z=0.5,
                    position_x_unit="mm",
                    position_y_unit="mm",
                    position_z_unit="µm",
                )
            ],
        ),
    )
    second = om.Image(
        id="Image:1",
        name="overview",
        pixels=om.Pixels(
            id="Pixels:1",
            dimension_order="XYCZT",
            type="uint8",
            size_x=20,
            size_y=24,
            size_c=1,
            size_z=1,
            size_t=1,
            channels=[om.Channel(id="Channel:1:0", samples_per_pixel=1)],
            tiff_data_blocks=[om.TiffData(ifd=6, plane_count=1)],
        ),
    )
    xml = om.OME(images=[first, second], instruments=[instrument]).to_xml()
    with tifffile.TiffWriter(path) as tif:
        tif.write(stack.reshape(6, 40, 30), description=xml.encode(), metadata=None, photometric="minisblack")
        tif.write(plane, metadata=None, photometric="minisblack")
    return stack, plane


def plain_tiff(path: Path, seed: int = 0, planes: int = 5) -> np.ndarray[Any, Any]:
    """A multi-page TIFF without metadata: a z-stack of ``planes`` planes, nothing known about it."""
    data = values((planes, 32, 24), seed=seed)
    tifffile.imwrite(path, data, metadata=None, photometric="minisblack")
    return data


def imagej_tiff(path: Path) -> np.ndarray[Any, Any]:
    data = values((2, 3, 4, 32, 24), seed=7)  # t, z, c, y, x
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um", "finterval": 3.0},
    )
    return data


def ngff_zarr(path: Path) -> np.ndarray[Any, Any]:
    """An OME-Zarr 0.5 with two levels at ``scale0/<name>``, ``scale1/<name>`` (ngff-zarr's paths)."""
    import ngff_zarr as nz

    data = values((3, 20, 30), "uint8", seed=3)
    image = nz.to_ngff_image(data, dims=["c", "y", "x"], scale={"y": 0.5, "x": 0.25}, name="ngff")
    nz.to_ngff_zarr(str(path), nz.to_multiscales(image, scale_factors=[2]), overwrite=True)
    return data


def ome_zarr_py(path: Path) -> np.ndarray[Any, Any]:
    """An OME-Zarr written by ome-zarr-py: levels ``s0``..., scales in nanometres, omero channel labels."""
    import zarr
    from ome_zarr.writer import write_image

    data = values((2, 3, 16, 16), seed=4)  # c, z, y, x
    root = zarr.open_group(str(path), mode="w")
    write_image(
        data,
        root,
        axes="czyx",
        scale_factors=[2],
        scale={"c": 1.0, "z": 800.0, "y": 300.0, "x": 300.0},
        axes_units={"z": "nanometer", "y": "nanometer", "x": "nanometer"},
        omero={
            "channels": [
                {"label": label, "color": color, "window": {"start": 0, "end": 4000, "min": 0, "max": 65535}}
                for label, color in (("Hoechst", "0000FF"), ("Actin", "00FF00"))
            ]
        },
    )
    return data


def czi(path: Path) -> np.ndarray[Any, Any]:
    """A Zeiss CZI written by Zeiss's own pylibCZIrw: two named channels, 0.1 µm pixels, 0.5 µm z steps."""
    from pylibCZIrw import czi as pyczi

    data = values((2, 3, 40, 30), seed=5)  # c, z, y, x
    with pyczi.create_czi(str(path), exist_ok=True) as writer:
        for c in range(2):
            for z in range(3):
                writer.write(data=data[c, z], plane={"C": c, "Z": z, "T": 0})
        writer.write_metadata(
            document_name="test",
            channel_names={0: "DAPI", 1: "GFP"},
            scale_x=0.1e-6,
            scale_y=0.1e-6,
            scale_z=0.5e-6,
        )
    return data
