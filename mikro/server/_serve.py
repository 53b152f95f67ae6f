"""Running the server (``mikro serve``) and adding users (``mikro user add``) from the command line."""

from __future__ import annotations

import errno
import signal
import socket
import sys

import anyio
import anyio.from_thread

from mikro.server._auth import create_user
from mikro.server._auth import rotate_token as _rotate_token
from mikro.server._database import Database
from mikro.server._settings import Settings

__all__ = ["PortInUseError", "add_user", "rotate_token", "serve"]


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


async def _serve(settings: Settings, sock: socket.socket) -> None:
    import uvicorn

    from mikro.server._app import create_app

    # A database this mikro cannot use (DatabaseSchemaError) is reported here, as one error, rather
    # than as a traceback from uvicorn's failed startup.
    async with Database(settings.sqlalchemy_url()):
        pass

    config = uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.02)
        # Scripts and test fixtures wait for exactly this line.
        print(f"mikro: listening on {_url(settings.host, port)}", flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()


def _loop_options() -> dict[str, bool]:
    """uvloop when installed (the ``server`` extra brings it on Linux and macOS): its futures, callbacks
    and cross-thread wake-ups cost about a third less CPU per request than asyncio's own loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then shut down cleanly and return."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sock = _bind(settings.host, settings.port)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these no-op handlers
    # in place that re-raise is harmless and the process exits with status 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        anyio.run(_serve, settings, sock, backend="asyncio", backend_options=_loop_options())
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.flush()


def add_user(settings: Settings, username: str, *, admin: bool = False) -> str:
    """Create a user in the server's database and return its token (callable from any thread)."""

    async def run() -> str:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with Database(settings.sqlalchemy_url()) as db:
            return await create_user(db, username, admin=admin)

    # A portal thread runs its own event loop, so this also works while another loop runs here.
    with anyio.from_thread.start_blocking_portal() as portal:
        return portal.call(run)


def rotate_token(settings: Settings, username: str) -> str:
    """Give a user a new token and return it; the old one stops working at once on every server that
    uses this data dir (later, up to ``auth_cache_ttl``, on servers that do not share it)."""

    async def run() -> str:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with Database(settings.sqlalchemy_url()) as db:
            return await _rotate_token(db, username, epoch_file=settings.auth_epoch_file)

    with anyio.from_thread.start_blocking_portal() as portal:
        return portal.call(run)
