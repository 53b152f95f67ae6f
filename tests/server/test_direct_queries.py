"""Queries the server answers without strawberry's HTTP view (mikro/server/_direct.py) get exactly the
answers strawberry's path gives: the same status, headers and bytes, errors included, and the same
authorisation. Each request is sent through strawberry's path first (which also parses, validates and
caches its document), then again with the direct path on; the test also checks which requests the
direct path answered, so that it cannot pass by the direct path never answering.

Over a real socket, against the server's app under uvicorn in this test's loop (the test switches the
direct path on and off, which only code in the server's process can)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mikro.server._auth import create_user
from mikro.server._direct import DirectQueries
from tests.server._helpers import Api, make_representation, serving_in_process

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.anyio,
    pytest.mark.single_backend(reason="the server runs on asyncio (uvicorn, SQLAlchemy's asyncio extension)"),
]

TOKEN = "direct-test-admin-token-0123456789"

RELATIONS = """
fragment Who on User { id username isAdmin }
query Image($id: ID!) {
  representation(id: $id) {
    id name shape dims dtype variety tags createdAt creator { ...Who }
    sample { id name tags creator { ...Who } } dataset { id name }
    experiments { id name } rois { id } metrics { id } thumbnails { id } origins { id } derived { id }
    store { id path shape chunks levels { path shape } }
    __typename
  }
}
query Other { me { id } }
"""

COSTLY = "query($n: Int) { samples(pagination: {limit: $n}) { representations { experiments { id } } } }"


class _Served:
    def __init__(self, app: Any, url: str, client: httpx.AsyncClient) -> None:
        self.direct: DirectQueries = app.gate.direct
        self.url = url
        self.client = client
        self.services = app.state.services
        self.answered = 0  # requests the direct path answered
        answer = self.direct.answer

        async def counted(*args: Any) -> None:
            self.answered += 1
            await answer(*args)

        self.direct.answer = counted  # type: ignore[method-assign]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[_Served]:
    async with serving_in_process(tmp_path / "data", TOKEN) as (app, port):
        url = f"http://127.0.0.1:{port}/graphql"
        async with httpx.AsyncClient(timeout=30) as client:
            yield _Served(app, url, client)


async def _both_ways(served: _Served, token: str, body: dict[str, Any], **headers: str) -> bool:
    """Send ``body`` through strawberry's path, then with the direct path on: the answers must be the
    same. Whether the direct path answered it."""
    post_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}
    content = json.dumps(body).encode()
    answers = []
    before = served.answered
    for enabled in (False, True):
        served.direct.enabled = enabled
        response = await served.client.post(served.url, content=content, headers=post_headers)
        headers_but_date = {k: v for k, v in response.headers.items() if k != "date"}
        answers.append((response.status_code, headers_but_date, response.content))
    assert answers[0] == answers[1], body
    return served.answered == before + 1


def _query(text: str, variables: Any = None, **fields: Any) -> dict[str, Any]:
    # A comment of its own: a document new to the query cache, so the first request parses it.
    return {"query": f"# {uuid.uuid4()}\n{text}", "variables": variables, **fields}


async def test_queries_answered_directly_as_strawberry_answers_them(served: _Served) -> None:
    alice = await create_user(served.services.db, "alice")
    bob = await create_user(served.services.db, "bob")
    api = Api(served.client, served.url, alice)
    sample = (await api.data('mutation { createSample(input: {name: "s-ü", tags: ["a"]}) { id } }'))[
        "createSample"
    ]
    dataset = (await api.data('mutation { createDataset(input: {name: "d"}) { id } }'))["createDataset"]
    rep = await make_representation(api, "image", sample=sample["id"], dataset=dataset["id"], tags=["t"])

    direct = [
        _query("{ me { id username isAdmin __typename } }"),
        _query(RELATIONS, {"id": rep["id"]}, operationName="Image"),
        _query(RELATIONS, {"id": rep["id"]}, operationName="Other"),
        _query(
            "query($id: ID!) { a: sample(id: $id) { name } b: sample(id: $id) { tags } }",
            {"id": sample["id"]},
        ),
        # Errors: not found, an id that is no id, a variable missing or of the wrong type.
        _query("query($id: ID!) { sample(id: $id) { id } }", {"id": "999999"}),
        _query("query($id: ID!) { sample(id: $id) { id } }", {"id": "not-a-number"}),
        _query("query($id: ID!) { sample(id: $id) { id } }", {}),
        _query("query($n: Int!) { samples(pagination: {limit: $n}) { id } }", {"n": "x"}),
        _query("{ samples(pagination: {limit: 5}) { id name } }", None, extensions={"any": 1}),
    ]
    for body in direct:
        assert await _both_ways(served, alice, body), body
    # Another user's objects are not found for bob, however the request is answered.
    for body in direct[1:4]:
        assert await _both_ways(served, bob, body), body

    ordinary = [
        _query('mutation { createSample(input: {name: "m"}) { name } }'),  # a mutation
        _query(RELATIONS, {"id": rep["id"]}),  # two operations, none named
        _query(RELATIONS, {"id": rep["id"]}, operationName="Unknown"),
        _query("{ me { nope } }"),  # invalid
        _query("{ me { id "),  # does not parse
        _query("{ me { id } }", ["not", "an", "object"]),
        _query("{ me { id } }", None, operationName=3),
        {"query": COSTLY, "variables": {"n": 1_000_000}},  # the document above, over max_query_cost
        _query("{ samples " + "{ representations { sample " * 6 + "{ id }" + " } }" * 6 + " }"),  # too deep
        {"variables": {}},  # no query
    ]
    for body in ordinary:
        assert not await _both_ways(served, alice, body), body
    # A body strawberry does not take as JSON, twice: the second is not answered directly either.
    for _ in range(2):
        assert not await _both_ways(served, alice, direct[0], **{"Content-Type": "text/plain+json"})


async def test_big_integers_are_answered_as_strawberry_answers_them(served: _Served) -> None:
    # orjson cannot write integers beyond 64 bits: the answer falls back to the stdlib's encoder.
    api = Api(served.client, served.url, await create_user(served.services.db, "big"))
    rep = await make_representation(api)
    metric = "mutation($i: MetricInput!) { createMetric(input: $i) { id } }"
    await api.data(metric, {"i": {"representation": rep["id"], "key": "big", "value": {"n": 2**70 + 1}}})
    body = _query("query($r: ID) { metrics(filter: {representation: $r}) { key value } }", {"r": rep["id"]})
    assert await _both_ways(served, api.token, body)
    assert (await api.data(body["query"], body["variables"]))["metrics"][0]["value"] == {"n": 2**70 + 1}
