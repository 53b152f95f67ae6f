"""Inputs are bounded: an array the API cannot serve is refused (and so cannot poison every later
listing), and tag counts, variable sizes and nesting have limits with errors naming them."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from tests.server._helpers import FINISH, UPLOAD, Api, array_node, make_representation, write_zarr_json

pytestmark = pytest.mark.anyio

LIST = "{ representations { id shape store { shape chunks } } }"


def _node(shape: list[Any], chunks: list[Any], dtype: str = "uint16") -> dict[str, Any]:
    node = array_node([1] * len(shape), [1] * len(shape), dtype, None)
    node["shape"] = shape
    node["chunk_grid"]["configuration"]["chunk_shape"] = chunks
    return node


@pytest.mark.parametrize(
    "node",
    [
        _node([2**31, 1], [1, 1]),  # beyond GraphQL's Int: the poison row of issue 13
        _node([2**30, 2**30, 2**30], [64, 64, 64]),  # each dim fits, 2**90 elements do not
        _node([0, 16], [1, 16]),
        _node([16, 16], [0, 16]),
        _node([True, 16], [1, 16]),
        _node([16, 16], [16, 16], "datetime64[s]"),
    ],
    ids=["dim over Int", "over 2**53 elements", "zero shape", "zero chunk", "bool dim", "datetime dtype"],
)
async def test_arrays_the_api_cannot_serve_are_refused(api: Api, node: dict[str, Any]) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    await anyio.to_thread.run_sync(write_zarr_json, grant["path"], node)
    error = await api.error(FINISH, {"s": grant["storeId"]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    # Nothing was recorded that would break a listing.
    await make_representation(api, "fine")
    assert (await api.data(LIST))["representations"]


async def test_tag_count_is_bounded(api: Api) -> None:
    query = 'mutation($t: [String!]!) { createSample(input: {name: "tagged", tags: $t}) { id } }'
    error = await api.error(query, {"t": [f"t{i}" for i in range(1001)]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "1000" in error["message"]
    assert (await api.data(query, {"t": ["a", "b"]}))["createSample"]["id"]


METRIC = (
    'mutation($r: ID!, $v: JSON!) { createMetric(input: {representation: $r, key: "k", value: $v}) { id } }'
)


@pytest.mark.parametrize(
    "value, limit",
    [
        (json.dumps([0] * 600_000), "max_input_values"),
        ("[" * 4000 + "]" * 4000, "max_input_depth"),  # metadata nested 4,000 deep
        ('[[1, 2], {"a": [3]}]', None),
    ],
    ids=["many values", "deep", "fine"],
)
async def test_metric_values_are_bounded(api: Api, value: str, limit: str | None) -> None:
    rep = await make_representation(api, "measured")
    # Written by hand: json.dumps itself refuses the deep value.
    body = f'{{"query": {json.dumps(METRIC)}, "variables": {{"r": {json.dumps(rep["id"])}, "v": {value}}}}}'
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"}
    response = await api.client.post(api.url, content=body.encode(), headers=headers)
    if limit is None:
        assert response.json()["data"]["createMetric"]["id"]
        return
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and limit in error["message"]
