"""Sub-commands of the ``mikro`` CLI; each imports what it needs inside its body."""

from __future__ import annotations

from mikro.cli import app

__all__ = ["app"]
