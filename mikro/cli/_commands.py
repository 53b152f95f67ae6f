"""Sub-commands of the ``mikro`` CLI; each imports what it needs inside its body."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mikro.cli import app
from mikro.cli._errors import exit_on

if TYPE_CHECKING:
    from mikro.server import Settings

__all__ = ["app"]


# --- the reference server (needs the `server` extra) -----------------------------------------------

#: The options of every command that opens the server's database (typer builds each command's own from them).
DATA_DIR = typer.Option(None, "--data-dir", help="The server's data dir.")
DATABASE_URL = typer.Option(None, "--database-url", help="The server's database URL.")


def server_settings(**overrides: Any) -> Settings:
    """The server's ``Settings``: the options given (None: not given) over ``MIKRO_*`` and the defaults;
    a bad value is one line per setting and exit 2, not pydantic's traceback."""
    from pydantic import ValidationError

    from mikro.server import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        for error in e.errors():
            typer.echo(f"mikro: {error['loc'][0] if error['loc'] else 'settings'}: {error['msg']}", err=True)
        raise typer.Exit(2) from None


def server_errors() -> tuple[type[Exception], ...]:
    """The server's errors a user can act on: the schema is behind or ahead, an unknown user, ..."""
    from mikro.server._errors import ApiError
    from mikro.server._migrate import DatabaseSchemaError

    return ApiError, DatabaseSchemaError


@app.command()
def serve(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Database, objects and admin token live here."
    ),
    host: str | None = typer.Option(None, "--host", help="Interface to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(
        None, "--port", help="Port to listen on; 0 picks a free one (default 8080)."
    ),
    database_url: str | None = typer.Option(None, "--database-url", help="PostgreSQL URL instead of SQLite."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="Keep pixels on this S3 endpoint."),
    s3_bucket: str | None = typer.Option(None, "--s3-bucket", help="S3 bucket for pixels."),
    grant_ttl: int | None = typer.Option(None, "--grant-ttl", help="Seconds a storage grant is valid."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Server processes sharing the port, database and store (default 1)."
    ),
) -> None:
    """Run the mikro reference server (settings also from MIKRO_* environment variables)."""
    from mikro.server import serve as run_server
    from mikro.server._serve import PortInUseError

    settings = server_settings(
        data_dir=data_dir,
        host=host,
        port=port,
        database_url=database_url,
        s3_endpoint=s3_endpoint,
        s3_bucket=s3_bucket,
        grant_ttl=grant_ttl,
        workers=workers,
    )
    with exit_on(*server_errors(), PortInUseError):
        run_server(settings)


user_app = typer.Typer(help="Manage the users of a mikro server.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name."),
    admin: bool = typer.Option(False, "--admin", help="The user sees and changes everyone's objects."),
    data_dir: Path | None = DATA_DIR,
    database_url: str | None = DATABASE_URL,
) -> None:
    """Create a user and print its bearer token (shown only once)."""
    from mikro.server import add_user

    settings = server_settings(data_dir=data_dir, database_url=database_url)
    with exit_on(*server_errors()):
        token = add_user(settings, name, admin=admin)
    typer.echo(token)


@user_app.command("rotate-token")
def user_rotate_token(
    name: str = typer.Argument(..., help="User name."),
    data_dir: Path | None = DATA_DIR,
    database_url: str | None = DATABASE_URL,
) -> None:
    """Give a user a new token and print it; the old token is refused from now on."""
    from mikro.server import rotate_token

    settings = server_settings(data_dir=data_dir, database_url=database_url)
    with exit_on(*server_errors()):
        token = rotate_token(settings, name)
    typer.echo(token)


db_app = typer.Typer(help="The server's database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(data_dir: Path | None = DATA_DIR, database_url: str | None = DATABASE_URL) -> None:
    """Bring the database's tables up to this mikro (``mikro serve`` also does this on start)."""
    from mikro.server._migrate import describe_upgrade
    from mikro.server._serve import upgrade_database

    settings = server_settings(data_dir=data_dir, database_url=database_url)
    with exit_on(*server_errors()):
        before, after = upgrade_database(settings)
    typer.echo(f"mikro: {describe_upgrade(before, after)}")


@db_app.command("current")
def db_current(data_dir: Path | None = DATA_DIR, database_url: str | None = DATABASE_URL) -> None:
    """Print the database's revision and this mikro's newest one; exit 1 when they differ."""
    from mikro.server._migrate import head_revision
    from mikro.server._serve import database_revision

    settings = server_settings(data_dir=data_dir, database_url=database_url)
    with exit_on(*server_errors()):
        current = database_revision(settings)
    head = head_revision()
    typer.echo(f"database: {current or 'none'}\nthis mikro: {head}")
    if current != head:
        raise typer.Exit(1)


# --- the demo (needs the `server` extra: it starts the reference server) ---------------------------


@app.command()
def demo(
    size_mib: float = typer.Option(256.0, "--size-mib", min=1, help="Size of the synthetic z-stack (MiB)."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Keep the server's data here (default: a fresh temp dir, removed after)."
    ),
    backend: str = typer.Option("asyncio", "--backend", help="Event loop for the client: asyncio or trio."),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary data dir."),
) -> None:
    """Upload a synthetic multi-channel z-stack to a fresh local server, read it back, compute on it."""
    from mikro._demo import run_demo

    if backend not in ("asyncio", "trio"):
        raise typer.BadParameter("--backend must be asyncio or trio")
    run_demo(size_mib=size_mib, data_dir=data_dir, backend=backend, keep=keep)
