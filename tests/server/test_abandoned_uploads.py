"""Reserved stores never finished are collected (with their objects) once older than the setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.server._helpers import array_node, write_zarr_json

UPLOAD = "mutation { requestUpload(kind: ZARR) { storeId path } }"
FINISH = "mutation($s: ID!) { finishUpload(store: $s) { populated } }"
STORE = "query($s: ID!) { zarrStore(id: $s) { id populated } }"


def _code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


def test_restart_collects_abandoned_uploads_and_keeps_finished_ones(server_factory: Any) -> None:
    server = server_factory.start(abandoned_upload_age=0)
    token = server.add_user("alice")
    abandoned = server.query(UPLOAD, token=token)["data"]["requestUpload"]
    (Path(abandoned["path"]) / "half-written").write_bytes(b"x" * 10)
    finished = server.query(UPLOAD, token=token)["data"]["requestUpload"]
    write_zarr_json(finished["path"], array_node([4, 4], [4, 4], "uint8", ["y", "x"]))
    assert server.query(FINISH, {"s": finished["storeId"]}, token=token)["data"]["finishUpload"]["populated"]

    server.stop()
    server.start()  # maintenance runs at start-up

    assert _code(server.query(STORE, {"s": abandoned["storeId"]}, token=token)) == "NOT_FOUND"
    assert not Path(abandoned["path"]).exists()
    kept = server.query(STORE, {"s": finished["storeId"]}, token=token)["data"]["zarrStore"]
    assert kept == {"id": finished["storeId"], "populated": True}
    assert json.loads((Path(finished["path"]) / "zarr.json").read_text())["node_type"] == "array"


def test_recent_unfinished_uploads_survive_a_restart(server_factory: Any) -> None:
    server = server_factory.start()  # the default age: two days
    token = server.add_user("bob")
    pending = server.query(UPLOAD, token=token)["data"]["requestUpload"]
    server.stop()
    server.start()
    store = server.query(STORE, {"s": pending["storeId"]}, token=token)["data"]["zarrStore"]
    assert store == {"id": pending["storeId"], "populated": False}
