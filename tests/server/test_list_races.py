"""A list read while another request deletes some of its objects still answers: the deleted ones are
left out, the rest listed, never an error for the whole list."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.server._helpers import make_representation

pytestmark = pytest.mark.anyio

LIST = """query($s: ID) { representations(filter: {sample: $s}, pagination: {limit: 1000}) {
    id store { id path } sample { id } rois { id representation { id } } } }"""
DELETE = "mutation($id: ID!) { deleteRepresentation(id: $id) }"


async def test_lists_racing_deletes_never_fail(new_api: Any) -> None:
    api = new_api("racer")
    sample = (await api.data('mutation { createSample(input: {name: "race"}) { id } }'))["createSample"]["id"]
    reps = [(await make_representation(api, f"r{i}", sample=sample))["id"] for i in range(24)]
    answers: list[list[str]] = []
    deleting = True

    async def lister() -> None:
        while deleting:
            answers.append([rep["id"] for rep in (await api.data(LIST, {"s": sample}))["representations"]])

    async def deleter() -> None:
        nonlocal deleting
        for rep in reps:
            await api.data(DELETE, {"id": rep})
        deleting = False

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(lister)
        tg.start_soon(deleter)

    # Every answer (api.data asserts it had no errors) lists a shrinking set of the images.
    assert answers
    assert all(set(ids) <= set(reps) for ids in answers)
    assert (await api.data(LIST, {"s": sample}))["representations"] == []
