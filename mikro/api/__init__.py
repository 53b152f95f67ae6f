"""Typed models of the schema's types and the typed operations the session offers."""

from mikro.api._acquisition import Acquisition, Instrument, Objective, SourceMatch, StagePosition
from mikro.api._base import MikroModel
from mikro.api._documents import Operation, all_operations, operation
from mikro.api._enums import EventKind, RepresentationVariety, RoiKind, StoreKind, UploadKind
from mikro.api._events import RepresentationEvent, RoiEvent
from mikro.api._grant import Credentials, Grant
from mikro.api._models import (
    ROI,
    Channel,
    Dataset,
    Experiment,
    File,
    MediaStore,
    Metric,
    ParquetStore,
    PhysicalSize,
    Representation,
    Sample,
    Table,
    TableColumn,
    Thumbnail,
    User,
    ZarrLevel,
    ZarrStore,
)
from mikro.api._operations import DEFAULT_PAGE_SIZE, IdLike, Operations

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "ROI",
    "Acquisition",
    "Channel",
    "Credentials",
    "Dataset",
    "EventKind",
    "Experiment",
    "File",
    "Grant",
    "IdLike",
    "Instrument",
    "MediaStore",
    "Metric",
    "MikroModel",
    "Objective",
    "Operation",
    "Operations",
    "ParquetStore",
    "PhysicalSize",
    "Representation",
    "RepresentationEvent",
    "RepresentationVariety",
    "RoiEvent",
    "RoiKind",
    "Sample",
    "SourceMatch",
    "StagePosition",
    "StoreKind",
    "Table",
    "TableColumn",
    "Thumbnail",
    "UploadKind",
    "User",
    "ZarrLevel",
    "ZarrStore",
    "all_operations",
    "operation",
]
