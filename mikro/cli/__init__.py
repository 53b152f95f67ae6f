"""The ``mikro`` command line: ``serve``, ``user``, ``demo`` ... (typer, so ``--help`` is generated)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="mikro: microscopy data on a GraphQL server, pixels as zarr on object storage.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()


def _register() -> None:
    # Sub-commands import the server or the client lazily so `mikro --help` stays fast and a
    # client-only install (without the `server` extra) still gets a working CLI.
    from mikro.cli import _browse, _commands, _ingest  # noqa: F401
