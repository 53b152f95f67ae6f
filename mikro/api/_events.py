"""Subscription events: what changed, with a cursor a resubscription can resume after."""

from __future__ import annotations

from mikro.api._base import MikroModel
from mikro.api._enums import EventKind
from mikro.api._models import ROI, Representation

__all__ = ["RepresentationEvent", "RoiEvent"]


class RepresentationEvent(MikroModel):
    """``kind`` GAP means events were lost; DELETE events carry ``id`` but no ``representation``."""

    cursor: int
    kind: EventKind
    id: str | None = None
    representation: Representation | None = None


class RoiEvent(MikroModel):
    """``kind`` GAP means events were lost; DELETE events carry ``id`` but no ``roi``."""

    cursor: int
    kind: EventKind
    id: str | None = None
    roi: ROI | None = None
