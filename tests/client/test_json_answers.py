"""The server encodes answers with orjson (the standard library for what orjson refuses) and the
client parses them with pydantic-core's parser. A user notices only that values come back as sent:
integers beyond 64 bits exact and still integers, non-ASCII text, floats to the last digit, and a
long list whole."""

from __future__ import annotations

import numpy as np
import pytest

import mikro
from tests.client.conftest import unique

pytestmark = pytest.mark.anyio


async def make_representation(m: mikro.Mikro, **relations: object) -> mikro.Representation:
    return await m.create_representation(np.ones((4, 4), np.uint8), name=unique("img"), **relations)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [2**70 + 1, -(2**65) - 3, {"counts": [2**64 + 7, 1], "label": "µm²"}, "Zellkern ✓ 細胞", 0.1 + 0.2],
)
async def test_metric_values_come_back_as_sent(m: mikro.Mikro, value: object) -> None:
    rep = await make_representation(m)
    metric = await m.create_metric(rep, "k", value)
    fetched = (await m.get_metric(metric.id)).value
    assert metric.value == value and fetched == value and type(fetched) is type(value)


async def test_a_long_list_comes_back_whole(m: mikro.Mikro) -> None:
    name = unique("many")
    sample = await m.create_sample(name)
    made = {(await make_representation(m, sample=sample)).id for _ in range(30)}
    listed = await m.list_representations(sample=sample.id, limit=100)
    assert {rep.id for rep in listed} == made
    assert all(rep.sample is not None and rep.sample.name == name for rep in listed)
