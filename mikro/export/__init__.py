"""Taking pixels out of mikro into files other tools open: OME-TIFF, OME-Zarr, ``.npy``, PNG."""

from __future__ import annotations

from mikro.export._formats import FORMATS, check_export, export_image, format_of, parse_isel

__all__ = ["FORMATS", "check_export", "export_image", "format_of", "parse_isel"]
