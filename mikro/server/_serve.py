"""Running the server (``mikro serve``) and adding users (``mikro user add``) from the command line."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
from typing import Any

import anyio
import anyio.from_thread

from mikro.server._auth import create_user
from mikro.server._auth import rotate_token as _rotate_token
from mikro.server._data_dir import prepare_data_dir
from mikro.server._database import Database
from mikro.server._gc import settle_heap
from mikro.server._migrate import describe_upgrade
from mikro.server._settings import Settings

__all__ = ["PortInUseError", "add_user", "database_revision", "rotate_token", "serve", "upgrade_database"]


class PortInUseError(RuntimeError):
    """The port ``mikro serve`` was asked to listen on is taken."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns TCP_NODELAY on only for sockets that say they are TCP, and
    # without it every keep-alive response waited ~40 ms for a delayed ACK (measured in benchmarks/).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is in use (another mikro serve?): pick another with --port, "
                "or --port 0 for any free one"
            ) from None
        raise
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/graphql"


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "lifespan": "on",
        "ws": "websockets-sansio",
        "timeout_graceful_shutdown": 5,
        # A websocket message is bounded like an HTTP body.
        "ws_max_size": settings.max_request_bytes,
    }


def _announce(settings: Settings, sock: socket.socket) -> None:
    # Scripts and test fixtures wait for exactly this line.
    print(f"mikro: listening on {_url(settings.host, sock.getsockname()[1])}", flush=True)


async def _upgrade(settings: Settings) -> None:
    """Upgrading here, before uvicorn starts: a database this mikro cannot use (DatabaseSchemaError) is
    reported as one error rather than as a traceback from a failed startup."""
    async with Database(settings.sqlalchemy_url()) as db:
        assert db.upgraded is not None
        print(f"mikro: {describe_upgrade(*db.upgraded)}", flush=True)


async def _start_once(settings: Settings) -> None:
    """Before the workers of ``--workers N`` start: everything a starting server does once."""
    from mikro.server._services import Services

    await _upgrade(settings)
    async with Services(settings):
        pass


async def _serve(settings: Settings, sock: socket.socket) -> None:
    import uvicorn

    from mikro.server._app import create_app

    await _upgrade(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **_uvicorn_options(settings)))

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.02)
        settle_heap()
        _announce(settings, sock)

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()


def upgrade_database(settings: Settings) -> tuple[str | None, str]:
    """``mikro db upgrade``: create or upgrade the tables; returns (revision before, revision now)."""

    async def run() -> tuple[str | None, str]:
        prepare_data_dir(settings)
        async with Database(settings.sqlalchemy_url()) as db:
            assert db.upgraded is not None
            return db.upgraded

    return anyio.run(run)


def database_revision(settings: Settings) -> str | None:
    """``mikro db current``: the database's revision, changing nothing (None: no tables yet)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from mikro.server._migrate import current_revision

    async def run() -> str | None:
        engine = create_async_engine(settings.sqlalchemy_url())
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    if settings.database_url is None and not (settings.data_dir / "mikro.sqlite3").exists():
        return None  # SQLite would create an empty file just to say so
    return anyio.run(run)


def _loop_options() -> dict[str, bool]:
    """uvloop when installed (the ``server`` extra brings it on Linux and macOS): its futures, callbacks
    and cross-thread wake-ups cost about a third less CPU per request than asyncio's own loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _configure_logging(level: str) -> None:
    """``log_level`` for mikro's own logger too (uvicorn's config reaches only uvicorn's loggers)."""
    logger = logging.getLogger("mikro")
    logger.setLevel(logging.DEBUG if level.upper() == "TRACE" else level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then shut down cleanly and return."""
    _configure_logging(settings.log_level)
    prepare_data_dir(settings)
    sock = _bind(settings.host, settings.port)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these no-op handlers
    # in place that re-raise is harmless and the process exits with status 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if settings.workers == 1:
            anyio.run(_serve, settings, sock, backend="asyncio", backend_options=_loop_options())
        else:
            from mikro.server._workers import run_workers

            anyio.run(_start_once, settings, backend="asyncio")
            options = {**_uvicorn_options(settings), "loop": "uvloop" if _loop_options() else "asyncio"}
            run_workers(settings, sock, options, lambda: _announce(settings, sock))
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.flush()


def add_user(settings: Settings, username: str, *, admin: bool = False) -> str:
    """Create a user in the server's database and return its token (callable from any thread)."""

    async def run() -> str:
        prepare_data_dir(settings)
        async with Database(settings.sqlalchemy_url()) as db:
            return await create_user(db, username, admin=admin)

    # A portal thread runs its own event loop, so this also works while another loop runs here.
    with anyio.from_thread.start_blocking_portal() as portal:
        return portal.call(run)


def rotate_token(settings: Settings, username: str) -> str:
    """Give a user a new token and return it; the old one stops working at once on every server that
    uses this data dir (later, up to ``auth_cache_ttl``, on servers that do not share it)."""

    async def run() -> str:
        prepare_data_dir(settings)
        async with Database(settings.sqlalchemy_url()) as db:
            return await _rotate_token(db, username, epoch_file=settings.auth_epoch_file)

    with anyio.from_thread.start_blocking_portal() as portal:
        return portal.call(run)
