"""Lists and gets of images with their relations answer the same through the server's plans
(mikro/server/_execution.py: fields answered without strawberry's resolvers) as through graphql-core's
own execution. A document with a directive is never planned, so the same document with
``@include(if: true)`` on its root field is the reference, from the same server and the same rows:
the client's own documents, and a deeper one with aliases, fragments, relations of relations, rows
another user may not see and images deleted before the request; on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx
import pytest

from mikro.api._documents import operation
from tests.server._helpers import Api, b64, make_representation, png_bytes

pytestmark = pytest.mark.anyio

DEEP = """
query Deep($sample: ID) {
  representations(filter: {sample: $sample}, pagination: {limit: 50}) {
    id
    label: name
    ...Looks
    shown: store { id path levels { path shape } }
    sample { id name creator { username } representations { id name } }
    experiments { ...Named representations { id } }
    origins { id name origins { id } derived { id } store { id } }
    derived { id creator { id username } }
    rois { id kind vectors representation { id store { id } } creator { username } }
    metrics { key value roi { id label } representation { id } }
    thumbnails { width height png representation { id } }
    dataset { id ... on Dataset { name } parent { id } children { id } }
    originalFile { id }
    again: origins { label: name }
  }
}
fragment Looks on Representation {
  channels { name color } physicalSize { x y } acquisition { timeIncrement }
}
fragment Named on Experiment { id name creator { username } }
"""


def _unplanned(document: str) -> str:
    """The same document with a directive on its root field (answered by graphql-core alone)."""
    return re.sub(r"(\n\s*representations?\([^)]*\))", r"\1 @include(if: true)", document, count=1)


async def _both(api: Api, document: str, variables: dict[str, Any]) -> Any:
    unplanned = _unplanned(document)
    assert unplanned != document
    reference = (await api.post(unplanned, variables)).json()
    for _ in range(2):  # the first request plans, the second answers from the plans
        assert (await api.post(document, variables)).json() == reference
    return reference


async def _images(api: Api, admin: Api) -> tuple[str, list[str]]:
    sample = (await api.data('mutation { createSample(input: {name: "plans"}) { id } }'))["createSample"][
        "id"
    ]
    dataset = (await api.data('mutation { createDataset(input: {name: "d"}) { id } }'))["createDataset"]["id"]
    experiment = (await api.data('mutation { createExperiment(input: {name: "e"}) { id } }'))[
        "createExperiment"
    ]["id"]
    first = await make_representation(
        api,
        "first",
        sample=sample,
        dataset=dataset,
        experiments=[experiment],
        tags=["a", "b"],
        channels=[{"name": "dapi", "color": "#0000ff"}, {"name": "gfp"}],
        physicalSize={"x": 0.5, "y": 0.5},
        thumbnail={"png": b64(png_bytes(8, 6))},
    )
    second = await make_representation(api, "second", sample=sample, origins=[first["id"]])
    gone = await make_representation(api, "gone", sample=sample, origins=[first["id"]])
    third = await make_representation(
        api, "third", sample=sample, origins=[first["id"], second["id"], gone["id"]]
    )
    await api.data("mutation($id: ID!) { deleteRepresentation(id: $id) }", {"id": gone["id"]})
    roi = await api.data(
        "mutation($r: ID!) { createRoi(input: {representation: $r, kind: POINT, "
        'vectors: [[0, 0, 0, 1, 2]], label: "p"}) { id } }',
        {"r": first["id"]},
    )
    await api.data(
        "mutation($r: ID!, $roi: ID, $v: JSON!) { createMetric(input: "
        '{representation: $r, roi: $roi, key: "area", value: $v}) { id } }',
        {"r": first["id"], "roi": roi["createRoi"]["id"], "v": {"px": 3}},
    )
    # An admin's image derived from the user's: the user does not see it among `derived`.
    await make_representation(admin, "admins", origins=[first["id"]])
    return sample, [first["id"], second["id"], third["id"]]


async def test_lists_and_gets_answer_as_graphql_core_does(new_api: Any) -> None:
    await _answers_agree(new_api("planner"), new_api("plan-admin", admin=True))


def test_the_same_on_postgresql(server_factory: Any, postgres_url: str) -> None:
    # Sync, driving one async scenario (as test_postgres.py): it checks the database backend.
    server = server_factory.start(database_url=postgres_url)
    user, admin = server.add_user("planner"), server.add_user("plan-admin", admin=True)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            await _answers_agree(Api(http, server.url, user), Api(http, server.url, admin))

    anyio.run(scenario)


async def _answers_agree(api: Api, admin: Api) -> None:
    sample, ids = await _images(api, admin)

    deep = await _both(api, DEEP, {"sample": sample})
    assert "errors" not in deep
    listed = deep["data"]["representations"]
    assert [rep["label"] for rep in listed] == ["first", "second", "third"]
    first, _, third = listed
    # What the plans answered is what a user sees: relations, relations of relations, no deleted
    # or hidden rows, the same object twice under two aliases.
    assert [origin["id"] for origin in third["origins"]] == ids[:2]
    assert third["again"] == [{"label": "first"}, {"label": "second"}]
    assert [rep["id"] for rep in first["derived"]] == ids[1:]
    assert first["channels"] == [{"name": "dapi", "color": "#0000ff"}, {"name": "gfp", "color": None}]
    assert first["physicalSize"] == {"x": 0.5, "y": 0.5} and first["acquisition"] is None
    assert first["rois"][0]["representation"]["store"] == {"id": first["shown"]["id"]}
    assert first["metrics"] == [
        {
            "key": "area",
            "value": {"px": 3},
            "roi": {"id": first["rois"][0]["id"], "label": "p"},
            "representation": {"id": ids[0]},
        }
    ]
    assert first["thumbnails"][0]["width"] == 8 and first["thumbnails"][0]["png"]
    assert first["experiments"][0]["name"] == "e" and first["dataset"]["name"] == "d"
    assert first["sample"]["creator"] == {
        "username": (await api.data("{ me { username } }"))["me"]["username"]
    }

    listing = operation("ListRepresentations").document
    answer = await _both(api, listing, {"filter": {"sample": sample}, "pagination": {"limit": 10}})
    assert [rep["id"] for rep in answer["data"]["representations"]] == ids
    getting = operation("GetRepresentation").document
    for rep_id in ids:
        answer = await _both(api, getting, {"id": rep_id})
        assert answer["data"]["representation"]["id"] == rep_id
    # A deleted image: the same error, at the same path.
    gone = await _both(api, getting, {"id": str(int(ids[-1]) + 10_000)})
    assert gone["data"] is None and gone["errors"][0]["path"] == ["representation"]
