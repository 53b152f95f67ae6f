"""The server's data dir: private to the user running the server (0700), its database 0600."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mikro.server._settings import Settings

__all__ = ["prepare_data_dir"]

# SQLite gives its -wal and -shm files the mode of the database file itself.
_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def prepare_data_dir(settings: Settings) -> Path:
    """Create the data dir (0700) and the SQLite file in it (0600), tightening ones that exist: they
    hold every user's token hashes and idempotency answers."""
    directory = settings.data_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    database = settings.sqlite_path
    if database is not None:
        # Created here with 0600, before SQLite creates it with the umask's 0644.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for suffix in _SQLITE_SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{database}{suffix}", 0o600)
    return directory
