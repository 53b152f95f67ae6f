"""Invalid input gets a GraphQL error with a code, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.server._helpers import (
    CREATE_REP,
    FINISH,
    UPLOAD,
    Api,
    array_node,
    db_rows,
    make_representation,
    upload_zarr,
    write_zarr_json,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def database(mikro_server: Any) -> Path:
    """The session server's SQLite file, to check that nothing was written."""
    return Path(mikro_server.database_path)


async def _user_id(api: Api) -> int:
    return int((await api.data("{ me { id } }"))["me"]["id"])


async def test_unknown_and_malformed_ids(api: Api) -> None:
    for kind in ("sample", "experiment", "dataset", "representation", "roi", "metric", "table", "thumbnail"):
        assert await api.code(f'{{ {kind}(id: "999999") {{ id }} }}') == "NOT_FOUND", kind
    assert await api.code('{ sample(id: "abc") { id } }') == "BAD_USER_INPUT"
    assert await api.code('mutation { deleteSample(id: "999999") }') == "NOT_FOUND"
    assert await api.code('mutation { finishUpload(store: "999999") { id } }') == "NOT_FOUND"


@pytest.mark.parametrize(
    "page", [{"offset": -1, "limit": 10}, {"offset": 0, "limit": -5}, {"offset": 0, "limit": 1001}]
)
async def test_bad_pagination(api: Api, page: dict[str, int]) -> None:
    query = "query($p: OffsetPaginationInput) { samples(pagination: $p) { id } }"
    error = await api.error(query, {"p": page})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "pagination" in error["message"]


async def test_wrong_enum(api: Api, database: Path) -> None:
    assert await api.code("mutation { requestUpload(kind: TIFF) { storeId } }") == "BAD_USER_INPUT"
    variables = {"k": "TIFF"}
    assert await api.code("mutation($k: UploadKind!) { requestUpload(kind: $k) { storeId } }", variables) == (
        "BAD_USER_INPUT"
    )
    assert await api.code("{ rois(filter: {kind: CIRCLE}) { id } }") == "BAD_USER_INPUT"
    user = await _user_id(api)
    assert db_rows(database, "select id from stores where creator_id = ?", user) == []


@pytest.mark.parametrize(
    "sample",
    [
        {"name": "x" * 10_001},
        {"name": "ok", "description": "d" * 10_001},
        {"name": "ok", "tags": ["fine", "t" * 10_001]},
    ],
)
async def test_oversized_strings_write_nothing(api: Api, sample: dict[str, Any], database: Path) -> None:
    error = await api.error("mutation($i: SampleInput!) { createSample(input: $i) { id } }", {"i": sample})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "10000" in error["message"]
    assert db_rows(database, "select id from samples where creator_id = ?", await _user_id(api)) == []


async def test_oversized_json_metric_value(api: Api, database: Path) -> None:
    rep = await make_representation(api)
    code = await api.code(
        "mutation($i: MetricInput!) { createMetric(input: $i) { id } }",
        {"i": {"representation": rep["id"], "key": "k", "value": {"nested": ["v" * 10_001]}}},
    )
    assert code == "BAD_USER_INPUT"
    assert db_rows(database, "select id from metrics where representation_id = ?", int(rep["id"])) == []


async def test_roi_vectors_must_be_5d(api: Api, database: Path) -> None:
    rep = await make_representation(api)
    error = await api.error(
        "mutation($r: ID!) { createRoi(input: {representation: $r, kind: LINE, "
        "vectors: [[0,0,0,1,1],[1,1,1]]}) { id } }",
        {"r": rep["id"]},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "5-D" in error["message"]
    assert db_rows(database, "select id from rois where representation_id = ?", int(rep["id"])) == []


async def test_failed_mutation_is_rolled_back(api: Api, database: Path) -> None:
    """A create that fails half-way (unknown experiment, checked after the row was added) leaves nothing."""
    store = await upload_zarr(api)
    error = await api.error(CREATE_REP, {"input": {"store": store, "name": "x", "experiments": ["999999"]}})
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert db_rows(database, "select id from representations where store_id = ?", int(store)) == []
    # The store is still free for a correct attempt.
    created = await api.data(CREATE_REP, {"input": {"store": store, "name": "x"}})
    assert created["createRepresentation"]["name"] == "x"


async def test_finish_upload_without_metadata(api: Api) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    error = await api.error(FINISH, {"s": grant["storeId"]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "zarr.json" in error["message"]
    store = await api.data(
        "query($id: ID!) { zarrStore(id: $id) { populated shape } }", {"id": grant["storeId"]}
    )
    assert store["zarrStore"] == {"populated": False, "shape": None}


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"zarr_format": 2, "node_type": "array"}', b'{"zarr_format": 3, "node_type": "array"}'],
)
async def test_finish_upload_with_invalid_metadata(api: Api, content: bytes) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    (Path(grant["path"]) / "zarr.json").write_bytes(content)
    assert await api.code(FINISH, {"s": grant["storeId"]}) == "BAD_USER_INPUT"


async def test_finish_upload_of_an_ome_zarr_group(api: Api) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    root = Path(grant["path"])
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": {"version": "0.5", "multiscales": []}},
    }
    write_zarr_json(root, group)
    write_zarr_json(root / "0", array_node([3, 64, 64], [1, 32, 32], "float32", ["c", "y", "x"], [3, 64, 64]))
    store = (await api.data(FINISH, {"s": grant["storeId"]}))["finishUpload"]
    assert store["shape"] == [3, 64, 64]
    assert store["chunks"] == [1, 32, 32] and store["shards"] == [3, 64, 64]
    assert store["dtype"] == "float32" and store["dimensionNames"] == ["c", "y", "x"]
    assert store["path"] == str(root) and store["arrayPath"] == "0"  # the group, then the array in it


async def test_finish_upload_of_a_real_zarr_array(api: Api) -> None:
    import numpy as np
    import zarr

    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]

    def write() -> None:
        array = zarr.create_array(
            store=grant["path"],
            shape=(2, 5, 64, 64),
            chunks=(1, 1, 32, 32),
            shards=(1, 5, 64, 64),
            dtype="uint16",
            dimension_names=["t", "z", "y", "x"],
        )
        array[:] = np.arange(2 * 5 * 64 * 64, dtype="uint16").reshape(2, 5, 64, 64)

    await anyio.to_thread.run_sync(write)
    store = (await api.data(FINISH, {"s": grant["storeId"]}))["finishUpload"]
    assert store == {
        "id": grant["storeId"],
        "shape": [2, 5, 64, 64],
        "chunks": [1, 1, 32, 32],
        "shards": [1, 5, 64, 64],
        "dtype": "uint16",
        "dimensionNames": ["t", "z", "y", "x"],
        "path": grant["path"],
        "populated": True,
        "arrayPath": "",  # the store is the array itself
    }
    rep = await api.data(CREATE_REP, {"input": {"store": grant["storeId"], "name": "movie"}})
    assert rep["createRepresentation"]["dims"] == ["t", "z", "y", "x"]


def _unsharded(node: dict[str, Any]) -> None:
    node["codecs"] = node["codecs"][0]["configuration"]["codecs"]


def _gzip(node: dict[str, Any]) -> None:
    node["codecs"][0]["configuration"]["codecs"].append({"name": "gzip", "configuration": {"level": 1}})


def _complex(node: dict[str, Any]) -> None:
    node["data_type"] = "complex64"


def _huge(node: dict[str, Any]) -> None:
    node["shape"] = [2**27, 2**27]


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_unsharded, "sharded zarr arrays only"),
        (_gzip, "cannot decode inner chunk codecs"),
        (_complex, "data_type 'complex64'"),
        (_huge, "fewer than 2**53 elements"),
    ],
)
@pytest.mark.parametrize("sent", [False, True], ids=["read-from-store", "sent-as-arrayMetadata"])
async def test_server_refuses_arrays_mikro_cannot_read(
    api: Api, spoil: Callable[[dict[str, Any]], None], reason: str, sent: bool
) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    node = array_node([64, 64], [32, 32], "uint16", ["y", "x"], [64, 64])
    spoil(node)
    write_zarr_json(Path(grant["path"]) / "0", node)
    query, variables = FINISH, {"s": grant["storeId"]}
    if sent:
        document = json.dumps(node)
        query, variables = (
            CREATE_REP,
            {"input": {"store": grant["storeId"], "name": "x", "arrayMetadata": document}},
        )
    error = await api.error(query, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert reason in error["message"]


async def test_representation_needs_known_dimension_names(api: Api) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    write_zarr_json(grant["path"], array_node([4, 4], [4, 4], "uint8", ["row", "col"]))
    await api.data(FINISH, {"s": grant["storeId"]})
    assert await api.code(CREATE_REP, {"input": {"store": grant["storeId"], "name": "x"}}) == "BAD_USER_INPUT"


async def test_access_grants_follow_the_upload_state(api: Api) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    access = (
        "mutation($s: ID!, $w: Boolean!) { requestAccess(store: $s, write: $w) { write prefix path kind } }"
    )
    refreshed = (await api.data(access, {"s": grant["storeId"], "w": True}))["requestAccess"]
    assert refreshed == {"write": True, "prefix": grant["prefix"], "path": grant["path"], "kind": "FILE"}
    assert await api.code(access, {"s": grant["storeId"], "w": False}) == "CONFLICT"  # nothing to read yet
    write_zarr_json(grant["path"], array_node([4, 4], [4, 4], "uint8", ["y", "x"]))
    await api.data(FINISH, {"s": grant["storeId"]})
    assert await api.code(access, {"s": grant["storeId"], "w": True}) == "CONFLICT"  # finished: read-only
    read = (await api.data(access, {"s": grant["storeId"], "w": False}))["requestAccess"]
    assert read["write"] is False and read["prefix"] == grant["prefix"]


@pytest.mark.parametrize(
    ("level", "reason"),
    [
        ({"path": "1", "shape": [64, 64], "scale": [2.0, 2.0]}, "larger than level 0"),
        ({"path": "0", "shape": [16, 16], "scale": [2.0, 2.0]}, "new level path"),
        ({"path": "../x", "shape": [16, 16], "scale": [2.0, 2.0]}, "new level path"),
        ({"path": "1", "shape": [16, 16], "scale": [0.5, 2.0]}, "factor >= 1"),
        ({"path": "1", "shape": [16, 16], "scale": [2.0, 2.0], "dtype": "uint8"}, "level 0's dtype"),
    ],
)
async def test_server_refuses_bad_pyramid_levels(api: Api, level: dict[str, Any], reason: str) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    base = array_node([32, 32], [32, 32], "uint16", ["y", "x"], [32, 32])
    node = array_node(
        level["shape"], level["shape"], level.get("dtype", "uint16"), ["y", "x"], level["shape"]
    )
    levels = [{"path": level["path"], "arrayMetadata": json.dumps(node), "scale": level["scale"]}]
    input = {"store": grant["storeId"], "name": "x", "arrayMetadata": json.dumps(base), "levels": levels}
    error = await api.error(CREATE_REP, {"input": input})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert reason in error["message"]


async def test_finish_upload_records_the_levels_a_group_lists(api: Api) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    root = Path(grant["path"])
    scales = [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]
    datasets = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        for i, scale in enumerate(scales)
    ]
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    ome = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    write_zarr_json(root, {"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}})
    write_zarr_json(root / "0", array_node([2, 64, 64], [1, 32, 32], "uint16", ["c", "y", "x"], [2, 64, 64]))
    write_zarr_json(root / "1", array_node([2, 32, 32], [1, 32, 32], "uint16", ["c", "y", "x"], [2, 32, 32]))
    query = "mutation($s: ID!) { finishUpload(store: $s) { levels { path shape scale } } }"
    store = (await api.data(query, {"s": grant["storeId"]}))["finishUpload"]
    assert store["levels"] == [
        {"path": "0", "shape": [2, 64, 64], "scale": [1.0, 1.0, 1.0]},
        {"path": "1", "shape": [2, 32, 32], "scale": [1.0, 2.0, 2.0]},
    ]
