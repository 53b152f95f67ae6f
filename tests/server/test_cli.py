"""``mikro serve`` and ``mikro user add`` as a person runs them, and the server across restarts."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
from httpx_ws import connect_ws

from tests.fixtures_servers import MikroServer, process_env
from tests.server._helpers import Api, make_representation
from tests.server.test_subscriptions import REP_EVENTS


def _me(url: str, token: str) -> dict[str, Any]:
    response = httpx.post(
        url, json={"query": "{ me { username isAdmin } }"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["data"]["me"])


def test_serve_on_an_empty_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    server = MikroServer(data_dir).start()
    try:
        token_file = data_dir / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert "admin token written to" in server.stderr() and str(token_file) in server.stderr()
        assert _me(server.url, token_file.read_text().strip()) == {"username": "admin", "isAdmin": True}

        env = process_env()
        added = subprocess.run(
            [sys.executable, "-m", "mikro", "user", "add", "carol", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        token = added.stdout.strip()
        assert _me(server.url, token) == {"username": "carol", "isAdmin": False}
    finally:
        assert server.stop() == 0  # SIGTERM: a clean shutdown, exit status 0
    assert "Traceback" not in server.stderr()


def test_restart_keeps_data_and_reports_pruned_events(server_factory: Any) -> None:
    """Restart on the same data dir: objects survive, the admin token comes from MIKRO_ADMIN_TOKEN, and
    events older than the retention are pruned at start, so a subscriber resuming from before them gets
    one GAP event, then live events. (Sync: this checks the server, not the client's event loop.)"""
    server = server_factory.start(event_retention=0, admin_token="env-admin-token-0123456789")
    assert not (server.data_dir / "admin-token").exists()
    assert _me(server.url, "env-admin-token-0123456789") == {"username": "admin", "isAdmin": True}
    token = server.add_user("dora")
    old = _post(server.url, token, CREATE_SAMPLE, {"n": "old"})["createSample"]
    rep = anyio.run(_make_representation, server.url, token)
    server.restart()
    assert server.returncode == 0
    assert _post(server.url, token, "query($id: ID!) { sample(id: $id) { name } }", {"id": old["id"]}) == {
        "sample": {"name": "old"}
    }
    with (
        httpx.Client(timeout=30) as client,
        connect_ws(server.ws_url, client, subprotocols=["graphql-transport-ws"]) as ws,
    ):
        ws.send_json({"type": "connection_init", "payload": {"token": token}})
        assert ws.receive_json(timeout=30)["type"] == "connection_ack"
        ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": REP_EVENTS, "variables": {"after": 0}}}
        )
        gap = ws.receive_json(timeout=30)["payload"]["data"]["representations"]
        assert gap["kind"] == "GAP" and gap["id"] is None and gap["representation"] is None
        _post(server.url, token, "mutation($id: ID!) { deleteRepresentation(id: $id) }", {"id": rep})
        event = ws.receive_json(timeout=30)["payload"]["data"]["representations"]
        assert event == {"cursor": event["cursor"], "kind": "DELETE", "id": rep, "representation": None}
        assert event["cursor"] > gap["cursor"]


CREATE_SAMPLE = "mutation($n: String!) { createSample(input: {name: $n}) { id } }"


def _post(url: str, token: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        url, json={"query": query, "variables": variables or {}}, headers={"Authorization": f"Bearer {token}"}
    )
    body = response.json()
    assert not body.get("errors"), body
    return dict(body["data"])


async def _make_representation(url: str, token: str) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        return str((await make_representation(Api(http, url, token), "old image"))["id"])


def test_serve_on_a_port_in_use_says_so_in_one_line(mikro_server: MikroServer, tmp_path: Path) -> None:
    env = process_env()
    command = [sys.executable, "-m", "mikro", "serve", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(
        [*command, "--port", str(mikro_server.port)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"mikro: port {mikro_server.port} on 127.0.0.1 is in use (another mikro serve?): pick another "
        "with --port, or --port 0 for any free one"
    ]
