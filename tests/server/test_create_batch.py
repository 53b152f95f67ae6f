"""createRepresentations creates several images in one transaction, all or none, and an image's array
metadata can come with the request (arrayMetadata) instead of being read from the store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.server._helpers import UPLOAD, Api, array_node, b64, db_rows, png_bytes, write_zarr_json

pytestmark = pytest.mark.anyio

CREATE_MANY = """
mutation($inputs: [RepresentationInput!]!) {
  createRepresentations(inputs: $inputs) { id name shape dims dtype store { id populated shape chunks } }
}"""
CREATE = """
mutation($input: RepresentationInput!) {
  createRepresentation(input: $input) {
    id shape dims dtype store { id populated shape chunks path arrayPath }
  }
}"""


async def _reserve(api: Api) -> tuple[str, Path]:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    return str(grant["storeId"]), Path(grant["path"])


def _node(z: int) -> dict[str, Any]:
    return array_node([z, 32, 48], [1, 32, 48], "uint16", ["z", "y", "x"])


async def _ome_upload(api: Api, z: int) -> str:
    """A reserved store holding an OME-Zarr group with its array at 0/ (not finished)."""
    store, root = await _reserve(api)

    def write() -> None:
        write_zarr_json(root, {"zarr_format": 3, "node_type": "group", "attributes": {}})
        write_zarr_json(root / "0", _node(z))

    await anyio.to_thread.run_sync(write)
    return store


def _representations(server: Any, stores: list[str]) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(stores))
    return db_rows(
        server.database_path, f"select store_id from representations where store_id in ({marks})", *stores
    )


async def test_a_batch_creates_every_image_in_input_order(api: Api) -> None:
    stores = [await _ome_upload(api, z) for z in (1, 2, 3)]
    inputs = [{"store": s, "name": f"batch-{i}", "tags": ["b"]} for i, s in enumerate(stores)]
    reps = (await api.data(CREATE_MANY, {"inputs": inputs}))["createRepresentations"]
    assert [r["name"] for r in reps] == ["batch-0", "batch-1", "batch-2"]
    assert [r["shape"] for r in reps] == [[1, 32, 48], [2, 32, 48], [3, 32, 48]]
    assert [r["store"]["id"] for r in reps] == stores
    assert all(r["store"]["populated"] for r in reps)


async def test_one_bad_input_fails_the_batch_and_names_it(api: Api, mikro_server: Any) -> None:
    good = await _ome_upload(api, 1)
    empty, _ = await _reserve(api)  # nothing written: no metadata to finish it with
    inputs = [{"store": good, "name": "fine"}, {"store": empty, "name": "empty"}]
    error = await api.error(CREATE_MANY, {"inputs": inputs})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("inputs[1]: ") and "zarr.json" in error["message"]
    # All or nothing: the good one was not created either, and can still be.
    assert _representations(mikro_server, [good, empty]) == []
    again = await api.data(CREATE_MANY, {"inputs": [{"store": good, "name": "fine"}]})
    assert again["createRepresentations"][0]["shape"] == [1, 32, 48]


CREATE_MANY_THUMBED = """
mutation($inputs: [RepresentationInput!]!) {
  createRepresentations(inputs: $inputs) { id name thumbnails { width height png } }
}"""


async def test_a_batch_records_each_images_thumbnail(api: Api, mikro_server: Any) -> None:
    stores = [await _ome_upload(api, z) for z in (1, 2, 3)]
    first, third = png_bytes(48, 32), png_bytes(30, 20)
    inputs: list[dict[str, Any]] = [{"store": s, "name": f"thumbed-{i}"} for i, s in enumerate(stores)]
    inputs[0]["thumbnail"] = {"png": b64(first)}
    inputs[2]["thumbnail"] = {"png": b64(third)}
    reps = (await api.data(CREATE_MANY_THUMBED, {"inputs": inputs}))["createRepresentations"]
    assert [r["thumbnails"] for r in reps] == [
        [{"width": 48, "height": 32, "png": b64(first)}],
        [],
        [{"width": 30, "height": 20, "png": b64(third)}],
    ]


async def test_one_bad_thumbnail_fails_the_batch_and_names_it(api: Api, mikro_server: Any) -> None:
    stores = [await _ome_upload(api, z) for z in (1, 2)]
    thumbs = [{"png": b64(png_bytes(8, 8))}, {"png": b64(b"\x89PNG\r\n\x1a\n but no header")}]
    inputs = [
        {"store": s, "name": f"bad-thumb-{i}", "thumbnail": t}
        for i, (s, t) in enumerate(zip(stores, thumbs, strict=True))
    ]
    error = await api.error(CREATE_MANY, {"inputs": inputs})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("inputs[1]: thumbnail png is not a PNG")
    assert _representations(mikro_server, stores) == []
    assert db_rows(
        mikro_server.database_path,
        "select count(*) from thumbnails t join representations r "
        "on r.id = t.representation_id where r.name like 'bad-thumb-%'",
    ) == [(0,)]


async def _thumbnail_object(api: Api, z: int, png: bytes | None) -> str:
    """An upload whose client wrote its thumbnail as ``0/thumbnail.png`` (``png`` None: wrote none)."""
    store, root = await _reserve(api)

    def write() -> None:
        write_zarr_json(root, {"zarr_format": 3, "node_type": "group", "attributes": {}})
        write_zarr_json(root / "0", _node(z))
        if png is not None:
            (root / "0" / "thumbnail.png").write_bytes(png)

    await anyio.to_thread.run_sync(write)
    return store


async def test_a_thumbnail_written_beside_the_image_is_registered_by_its_size_and_served(
    api: Api, mikro_server: Any
) -> None:
    stored, tag = png_bytes(40, 24), uuid.uuid4().hex
    stores = [await _thumbnail_object(api, 1, stored), await _ome_upload(api, 2)]
    inputs: list[dict[str, Any]] = [
        {"store": stores[0], "name": f"stored-{tag}", "thumbnail": {"width": 40, "height": 24}},
        {"store": stores[1], "name": f"sent-{tag}", "thumbnail": {"png": b64(png_bytes(8, 6))}},
    ]
    reps = (await api.data(CREATE_MANY_THUMBED, {"inputs": inputs}))["createRepresentations"]
    assert reps[0]["thumbnails"] == [{"width": 40, "height": 24, "png": b64(stored)}]
    assert reps[1]["thumbnails"] == [{"width": 8, "height": 6, "png": b64(png_bytes(8, 6))}]
    # The database keeps the object's key, not its bytes; the PNG sent with the request is kept whole.
    assert db_rows(
        mikro_server.database_path,
        "select r.name, t.png is null, t.key like '%/0/thumbnail.png' from thumbnails t "
        "join representations r on r.id = t.representation_id where r.name like ? order by r.name",
        f"%-{tag}",
    ) == [(f"sent-{tag}", 0, None), (f"stored-{tag}", 1, 1)]


async def test_a_thumbnail_without_png_needs_its_size_and_a_missing_object_is_not_found(api: Api) -> None:
    stores = [await _thumbnail_object(api, 1, None) for _ in range(2)]
    inputs: list[dict[str, Any]] = [
        {"store": stores[0], "name": "sized", "thumbnail": {"width": 8, "height": 8}},
        {"store": stores[1], "name": "unsized", "thumbnail": {"width": 8}},
    ]
    error = await api.error(CREATE_MANY, {"inputs": inputs})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("inputs[1]: thumbnail needs its png, or the width and height")
    too_wide = {"store": stores[1], "name": "wide", "thumbnail": {"width": 5000, "height": 8}}
    error = await api.error(CREATE_MANY, {"inputs": [inputs[0], too_wide]})
    assert error["message"].startswith("inputs[1]: thumbnail is 5000x8 pixels")
    # Registered without its object (a client that did not write it): the PNG is not found when read.
    made = (await api.data(CREATE_MANY, {"inputs": inputs[:1]}))["createRepresentations"][0]
    query = "query($id: ID!) { representation(id: $id) { thumbnails { width png } } }"
    error = await api.error(query, {"id": made["id"]})
    assert error["extensions"]["code"] == "NOT_FOUND" and "not in its image's store" in error["message"]


async def test_a_store_used_twice_or_already_used_is_refused(api: Api, mikro_server: Any) -> None:
    first, second = await _ome_upload(api, 1), await _ome_upload(api, 2)
    twice = [{"store": first, "name": "a"}, {"store": first, "name": "b"}]
    error = await api.error(CREATE_MANY, {"inputs": twice})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "inputs[0] and inputs[1]" in error["message"]
    await api.data(CREATE_MANY, {"inputs": [{"store": first, "name": "a"}]})
    error = await api.error(
        CREATE_MANY, {"inputs": [{"store": second, "name": "b"}, {"store": first, "name": "c"}]}
    )
    assert error["extensions"]["code"] == "CONFLICT" and error["message"].startswith("inputs[1]: ")
    assert _representations(mikro_server, [second]) == []


async def test_a_batch_has_a_limit_and_may_be_empty(api: Api) -> None:
    store = await _ome_upload(api, 1)
    error = await api.error(CREATE_MANY, {"inputs": [{"store": store, "name": "x"}] * 257})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "at most 256" in error["message"]
    assert (await api.data(CREATE_MANY, {"inputs": []}))["createRepresentations"] == []


async def test_array_metadata_sent_with_the_request_finishes_the_upload(api: Api) -> None:
    """The server records what the client says it wrote at 0/zarr.json, without reading the store."""
    store, root = await _reserve(api)
    document = json.dumps(_node(5))
    rep = (await api.data(CREATE, {"input": {"store": store, "name": "sent", "arrayMetadata": document}}))[
        "createRepresentation"
    ]
    assert not (root / "0" / "zarr.json").exists()
    assert rep["shape"] == [5, 32, 48] and rep["dims"] == ["z", "y", "x"] and rep["dtype"] == "uint16"
    assert rep["store"]["populated"] and rep["store"]["chunks"] == [1, 32, 48]
    assert rep["store"]["path"] == str(root) and rep["store"]["arrayPath"] == "0"


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"zarr_format": 2}), "zarr v3"),
        (json.dumps({"zarr_format": 3, "node_type": "group"}), "not array"),
        (json.dumps({**array_node([4, 4], [4, 4], "uint16", ["y", "x"]), "shape": [-1, 4]}), "shape"),
        (json.dumps(array_node([4, 4], [4, 4], "uint16", ["y", "q"])), "dimension_names"),
    ],
)
async def test_bad_array_metadata_is_refused_and_creates_nothing(
    api: Api, mikro_server: Any, document: str, says: str
) -> None:
    store, _ = await _reserve(api)
    error = await api.error(CREATE, {"input": {"store": store, "name": "bad", "arrayMetadata": document}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and says in error["message"]
    assert _representations(mikro_server, [store]) == []
    # The store stays unfinished and usable.
    assert db_rows(mikro_server.database_path, "select populated from stores where id = ?", store) == [(0,)]


CREATE_MANY_RELATIONS = """
mutation($inputs: [RepresentationInput!]!) {
  createRepresentations(inputs: $inputs) {
    name experiments { id } origins { id } derived { id } rois { id } metrics { id } thumbnails { width }
  }
}"""


async def test_the_answer_shows_the_relations_of_the_new_images(api: Api) -> None:
    """The answer's relations of new images come without reads where they are known (none derived, no
    ROIs, no metrics, no links the input did not name): the links the inputs did name are shown."""
    origin = await api.data(CREATE, {"input": {"store": await _ome_upload(api, 1), "name": "origin"}})
    origin_id = origin["createRepresentation"]["id"]
    experiment = (await api.data('mutation { createExperiment(input: {name: "e"}) { id } }'))[
        "createExperiment"
    ]
    stores = [await _ome_upload(api, z) for z in (1, 2)]
    inputs = [
        {
            "store": stores[0],
            "name": "linked",
            "experiments": [experiment["id"]],
            "origins": [origin_id],
            "thumbnail": {"png": b64(png_bytes(6, 4))},
        },
        {"store": stores[1], "name": "plain"},
    ]
    reps = (await api.data(CREATE_MANY_RELATIONS, {"inputs": inputs}))["createRepresentations"]
    none = {"derived": [], "rois": [], "metrics": []}
    assert reps == [
        {
            "name": "linked",
            "experiments": [experiment],
            "origins": [{"id": origin_id}],
            "thumbnails": [{"width": 6}],
            **none,
        },
        {"name": "plain", "experiments": [], "origins": [], "thumbnails": [], **none},
    ]
