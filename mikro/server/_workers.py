"""``mikro serve --workers N``: N server processes accepting on one socket (uvicorn's supervisor).

The parent binds the socket, upgrades the database and does the once-per-start work (the admin user,
idempotency keys left pending by a dead server, abandoned uploads) before any worker serves, then
uvicorn's ``Multiprocess`` spawns the workers, restarts one that dies, and stops them all on SIGINT or
SIGTERM. What the workers share lives in the database and the data dir: events (``_event_feed``),
idempotency keys, token revocations (the epoch file), and one-at-a-time maintenance (``_locks``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mikro.server._gc import settle_heap
from mikro.server._settings import Settings

__all__ = ["run_workers", "worker_app"]

_SETTINGS_ENV = "MIKRO_WORKER_SETTINGS_JSON"
_READY_ENV = "MIKRO_WORKER_READY_DIR"


def worker_app() -> ASGIApp:
    """The app of one worker process (uvicorn imports this factory there)."""
    from mikro.server._app import create_app

    settings = Settings.model_validate(json.loads(os.environ[_SETTINGS_ENV]))
    return _SignalReady(create_app(settings), Path(os.environ[_READY_ENV]))


class _SignalReady:
    """Leaves a file in the ready dir once the worker's startup (lifespan) has completed."""

    def __init__(self, app: ASGIApp, ready_dir: Path) -> None:
        self._app = app
        self._ready = ready_dir / str(os.getpid())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return

        async def send_and_signal(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                settle_heap()
                await anyio.to_thread.run_sync(self._ready.touch)

        await self._app(scope, receive, send_and_signal)


def _plain(settings: Settings) -> dict[str, Any]:
    values = settings.model_dump()
    return {
        key: value.get_secret_value() if isinstance(value, SecretStr) else value
        for key, value in values.items()
    }


def run_workers(
    settings: Settings, sock: socket.socket, uvicorn_options: dict[str, Any], announce: Callable[[], None]
) -> None:
    """Serve with ``settings.workers`` processes until SIGINT/SIGTERM; ``announce`` once all are up."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    ready_dir = Path(tempfile.mkdtemp(prefix="mikro-workers-"))
    worker_settings = {**_plain(settings), "workers": 1, "recover_interrupted": False}
    # Spawned workers inherit the environment: the settings (secrets too) never touch the disk.
    os.environ[_SETTINGS_ENV] = json.dumps(worker_settings, default=str)
    os.environ[_READY_ENV] = str(ready_dir)
    stop = threading.Event()

    def announce_when_ready() -> None:
        while not stop.wait(0.05):
            if len(os.listdir(ready_dir)) >= settings.workers:
                announce()
                return

    config = uvicorn.Config(
        "mikro.server._workers:worker_app", factory=True, workers=settings.workers, **uvicorn_options
    )
    sock.listen(config.backlog)
    announcer = threading.Thread(target=announce_when_ready, name="mikro-announce", daemon=True)
    announcer.start()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        stop.set()
        announcer.join()
        for name in (_SETTINGS_ENV, _READY_ENV):
            os.environ.pop(name, None)
        shutil.rmtree(ready_dir, ignore_errors=True)
