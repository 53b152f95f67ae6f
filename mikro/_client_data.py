"""The session's data plane (pixels, tables, compute): filled in by the datalayer integration (issue 4)."""

from __future__ import annotations

__all__ = ["DataPlaneMixin"]


class DataPlaneMixin:
    """Methods of :class:`mikro.Mikro` that move pixels and tables (placeholder until the data plane)."""
