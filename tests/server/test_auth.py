"""Bearer-token auth over HTTP, and ownership: user B can neither read, change, delete nor get a grant
for user A's objects; admins see everything."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server._helpers import UPLOAD, Api, db_rows, make_representation, upload_zarr

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic dXNlcjpwdw==", "Bearer"])
async def test_missing_or_bad_token_is_401(
    mikro_server: Any, http: httpx.AsyncClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await http.post(mikro_server.url, json={"query": "{ me { id } }"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "errors": [{"message": "missing or invalid bearer token", "extensions": {"code": "UNAUTHENTICATED"}}]
    }


async def test_unauthenticated_mutation_writes_nothing(mikro_server: Any, http: httpx.AsyncClient) -> None:
    name = "written-without-token"
    response = await http.post(
        mikro_server.url, json={"query": f'mutation {{ createSample(input: {{name: "{name}"}}) {{ id }} }}'}
    )
    assert response.status_code == 401
    assert db_rows(mikro_server.database_path, "select id from samples where name = ?", name) == []


async def test_me(api: Api) -> None:
    me = (await api.data("{ me { id username isAdmin } }"))["me"]
    assert me["username"].startswith("alice") and me["isAdmin"] is False


async def test_other_users_objects_are_not_found(new_api: Any) -> None:
    alice, bob = new_api("alice"), new_api("bob")
    sample = (await alice.data('mutation { createSample(input: {name: "mine"}) { id } }'))["createSample"][
        "id"
    ]
    dataset = (await alice.data('mutation { createDataset(input: {name: "d"}) { id } }'))["createDataset"][
        "id"
    ]
    rep = await make_representation(alice)
    roi = (
        await alice.data(
            "mutation($r: ID!) { createRoi(input: {representation: $r, kind: POINT, vectors: [[0,0,0,1,1]]}) "
            "{ id } }",
            {"r": rep["id"]},
        )
    )["createRoi"]["id"]
    store = rep["store"]["id"]
    unfinished = (await alice.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]["storeId"]

    denied = [
        ("query($id: ID!) { sample(id: $id) { name } }", {"id": sample}),
        ("query($id: ID!) { representation(id: $id) { name } }", {"id": rep["id"]}),
        ("query($id: ID!) { roi(id: $id) { id } }", {"id": roi}),
        ("query($id: ID!) { zarrStore(id: $id) { id } }", {"id": store}),
        ('mutation($id: ID!) { updateSample(id: $id, input: {name: "hacked"}) { id } }', {"id": sample}),
        (
            'mutation($id: ID!) { updateRepresentation(id: $id, input: {name: "hacked"}) { id } }',
            {"id": rep["id"]},
        ),
        ("mutation($id: ID!) { deleteSample(id: $id) }", {"id": sample}),
        ("mutation($id: ID!) { deleteRepresentation(id: $id) }", {"id": rep["id"]}),
        ("mutation($id: ID!) { deleteRoi(id: $id) }", {"id": roi}),
        ("mutation($s: ID!) { requestAccess(store: $s) { prefix } }", {"s": store}),
        ("mutation($s: ID!) { requestAccess(store: $s, write: true) { prefix } }", {"s": unfinished}),
        ("mutation($s: ID!) { finishUpload(store: $s) { id } }", {"s": unfinished}),
        (
            "mutation($r: ID!) { createRoi(input: {representation: $r, kind: POINT, vectors: [[0,0,0,0,0]]}) "
            "{ id } }",
            {"r": rep["id"]},
        ),
        ('mutation($d: ID!) { createDataset(input: {name: "x", parent: $d}) { id } }', {"d": dataset}),
    ]
    for query, variables in denied:
        assert await bob.code(query, variables) == "NOT_FOUND", query

    # Bob's own image cannot be linked to Alice's sample or derived from her image.
    bob_store = await upload_zarr(bob)
    linked = await bob.error(
        "mutation($i: RepresentationInput!) { createRepresentation(input: $i) { id } }",
        {"i": {"store": bob_store, "name": "b", "sample": sample, "origins": [rep["id"]]}},
    )
    assert linked["extensions"]["code"] == "NOT_FOUND"

    # Nothing of Alice's changed, and Bob's lists do not show her objects.
    still = await alice.data(
        "query($s: ID!, $r: ID!) { sample(id: $s) { name } representation(id: $r) { name rois { id } } }",
        {"s": sample, "r": rep["id"]},
    )
    assert still == {"sample": {"name": "mine"}, "representation": {"name": "image", "rois": [{"id": roi}]}}
    lists = await bob.data("{ samples { id } representations { id } rois { id } datasets { id } }")
    assert lists == {"samples": [], "representations": [], "rois": [], "datasets": []}


async def test_admin_sees_and_changes_everyones_objects(new_api: Any) -> None:
    alice, admin = new_api("alice"), new_api("boss", admin=True)
    sample = (await alice.data('mutation { createSample(input: {name: "s"}) { id } }'))["createSample"]["id"]
    seen = await admin.data(
        "query($id: ID!) { sample(id: $id) { name creator { username } } }", {"id": sample}
    )
    assert seen["sample"]["creator"]["username"].startswith("alice")
    listed = await admin.data("query($id: ID!) { samples(filter: {ids: [$id]}) { id } }", {"id": sample})
    assert listed["samples"] == [{"id": sample}]
    await admin.data(
        'mutation($id: ID!) { updateSample(id: $id, input: {name: "fixed"}) { id } }', {"id": sample}
    )
    assert (await alice.data("query($id: ID!) { sample(id: $id) { name } }", {"id": sample}))["sample"] == {
        "name": "fixed"
    }


async def test_a_relation_an_admin_linked_across_users_is_not_shown(new_api: Any) -> None:
    alice, bob, admin = new_api("alice"), new_api("bob"), new_api("boss", admin=True)
    rep = await make_representation(alice)
    bobs = (await bob.data('mutation { createSample(input: {name: "bob private"}) { id } }'))["createSample"]
    query = "mutation($r: ID!, $s: ID!) { updateRepresentation(id: $r, input: {sample: $s}) { id } }"
    await admin.data(query, {"r": rep["id"], "s": bobs["id"]})
    seen = await alice.data("query($r: ID!) { representation(id: $r) { sample { name } } }", {"r": rep["id"]})
    assert seen == {"representation": {"sample": None}}
    shown = await admin.data(
        "query($r: ID!) { representation(id: $r) { sample { name } } }", {"r": rep["id"]}
    )
    assert shown == {"representation": {"sample": {"name": "bob private"}}}
