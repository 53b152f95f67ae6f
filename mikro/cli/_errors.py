"""Errors a user can act on, printed as one line: the CLI's boundary for exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

__all__ = ["exit_on"]


@contextmanager
def exit_on(*errors: type[Exception]) -> Iterator[None]:
    """Any of ``errors`` raised inside is ``mikro: <message>`` on stderr and exit status 1, not a
    traceback (the messages are written for users: what went wrong and what to do)."""
    try:
        yield
    except errors as e:
        typer.echo(f"mikro: {e}", err=True)
        raise typer.Exit(1) from None
