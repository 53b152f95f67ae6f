"""The schema's enums, as string enums whose values are the GraphQL names."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EventKind", "RepresentationVariety", "RoiKind", "StoreKind", "UploadKind"]


class RepresentationVariety(StrEnum):
    VOXEL = "VOXEL"
    MASK = "MASK"
    RGB = "RGB"
    LABEL = "LABEL"
    UNKNOWN = "UNKNOWN"


class RoiKind(StrEnum):
    POINT = "POINT"
    LINE = "LINE"
    PATH = "PATH"
    RECTANGLE = "RECTANGLE"
    POLYGON = "POLYGON"
    ELLIPSE = "ELLIPSE"


class StoreKind(StrEnum):
    FILE = "FILE"
    S3 = "S3"


class UploadKind(StrEnum):
    ZARR = "ZARR"
    PARQUET = "PARQUET"
    MEDIA = "MEDIA"


class EventKind(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    GAP = "GAP"
