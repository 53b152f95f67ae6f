"""Settings a shared server must get right: a guessable admin token is refused, and MIKRO_LOG_LEVEL
reaches mikro's own logger (not only uvicorn's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.fixtures_servers import MikroServer, ServerFactory, process_env


def test_a_short_admin_token_is_refused(tmp_path: Path) -> None:
    env = process_env(MIKRO_ADMIN_TOKEN="a", MIKRO_DATA_DIR=str(tmp_path / "data"))
    # Every command that opens the server's settings says so in one line, not only `serve`.
    for command in (["serve", "--port", "0"], ["user", "add", "ann"], ["db", "upgrade"]):
        result = subprocess.run(
            [sys.executable, "-m", "mikro", *command], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 2, command
        assert result.stderr.strip().splitlines() == [
            "mikro: admin_token: Value error, MIKRO_ADMIN_TOKEN must be at least 16 characters "
            "(unset it to have one generated)"
        ], command


def test_log_level_reaches_mikros_logger(server_factory: ServerFactory) -> None:
    server: MikroServer = server_factory.start(log_level="info")
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    assert httpx.post(server.url, json={"query": "{ me { id } }"}, headers=headers).json()["data"]["me"]
    server.stop()
    # An INFO line of mikro's own logger, which Python alone would drop (its last-resort handler
    # shows warnings and worse).
    assert "INFO:     mikro.server: request limits" in server.stderr()
