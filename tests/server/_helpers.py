"""Talking to the reference server over HTTP the way any GraphQL client would (no mikro client)."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

from mikro.server._app import create_app
from mikro.server._settings import Settings


class Api:
    """One user's view of the server: ``await api.data(query)`` or ``await api.error(query)``."""

    def __init__(self, client: httpx.AsyncClient, url: str, token: str) -> None:
        self.client = client
        self.url = url
        self.token = token

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            self.url,
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
        )

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.post(query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return dict(body["data"])

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The first GraphQL error of a request that must fail."""
        response = await self.post(query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body.get("errors"), f"expected an error, got {body}"
        return dict(body["errors"][0])

    async def code(self, query: str, variables: dict[str, Any] | None = None) -> str:
        return str((await self.error(query, variables))["extensions"]["code"])


def write_zarr_json(directory: str | Path, node: dict[str, Any]) -> None:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "zarr.json").write_text(json.dumps(node))


def array_node(
    shape: list[int],
    chunks: list[int],
    dtype: str = "uint16",
    dims: list[str] | None = None,
    shards: list[int] | None = None,
) -> dict[str, Any]:
    """zarr v3 array metadata as zarr writes it, sharded (one chunk per shard unless ``shards`` is given):
    the server records only arrays mikro reads."""
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    shards = shards or chunks
    if shards is not None:
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": chunks,
                    "codecs": codecs,
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ]
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shards or chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": {},
        "dimension_names": dims,
    }


UPLOAD = (
    "mutation($kind: UploadKind!) { requestUpload(kind: $kind) { storeId kind path prefix bucket write } }"
)
FINISH = """mutation($s: ID!) {
  finishUpload(store: $s) { id shape chunks shards dtype dimensionNames path populated arrayPath }
}"""
CREATE_REP = """
mutation($input: RepresentationInput!) {
  createRepresentation(input: $input) { id name shape dims dtype variety tags store { id } }
}"""


async def upload_zarr(
    api: Api, shape: list[int] | None = None, dims: list[str] | None = None, dtype: str = "uint16"
) -> str:
    """Reserve a zarr store, put array metadata in it (folder store) and finish it; returns the store id."""
    shape = shape or [2, 16, 16]
    dims = dims or ["z", "y", "x"][-len(shape) :]
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    assert grant["kind"] == "FILE"
    await anyio.to_thread.run_sync(write_zarr_json, grant["path"], array_node(shape, shape, dtype, dims))
    await api.data(FINISH, {"s": grant["storeId"]})
    return str(grant["storeId"])


async def make_representation(api: Api, name: str = "image", **fields: Any) -> dict[str, Any]:
    store = await upload_zarr(api)
    rep = await api.data(CREATE_REP, {"input": {"store": store, "name": name, **fields}})
    return dict(rep["createRepresentation"])


def db_rows(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the server's SQLite file directly (to check what was, or was not, written)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        return list(conn.execute(sql, params).fetchall())


def png_bytes(width: int, height: int) -> bytes:
    """A real greyscale PNG of that size (a gradient, so it does not compress to nothing)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = (np.arange(width * height, dtype=np.uint32) % 251).astype(np.uint8).reshape(height, width)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """A ``Base64`` scalar's value."""
    import base64

    return base64.b64encode(data).decode("ascii")


@asynccontextmanager
async def serving_in_process(data_dir: Path, admin_token: str) -> AsyncIterator[tuple[Any, int]]:
    """The real app under uvicorn on a loopback socket, in this test's own loop (asyncio: the server's),
    for tests that reach into the running app: ``(app, port)``."""
    settings = Settings(_env_file=None, data_dir=data_dir, admin_token=admin_token)  # type: ignore[call-arg]
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(60):
                while not server.started:
                    await anyio.sleep(0.01)
            try:
                yield app, sock.getsockname()[1]
            finally:
                server.should_exit = True
    finally:
        sock.close()
