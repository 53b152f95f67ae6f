"""``representation(id)`` reads the image and the relations the query selects in one read (the rows the
image refers to through its own row: mikro/server/_query.py), where a list reads its page first and
the relations after. Both must answer the same: each image of a list, fetched alone, is exactly its
item of the list (relations, relations of relations, rows the caller may not see, an image deleted
before the request, an original file and its store), for its owner and for an admin; another user
gets the error an id that does not exist gets."""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import pytest

from tests.server._helpers import Api, make_representation
from tests.server.test_relation_plans import DEEP, _images

pytestmark = pytest.mark.anyio

ONE = DEEP.replace("query Deep($sample: ID)", "query One($id: ID!)").replace(
    "representations(filter: {sample: $sample}, pagination: {limit: 50})", "representation(id: $id)"
)
FILE = b"the microscope's own file"


async def _original_file(api: Api) -> str:
    grant = (await api.data("mutation { requestUpload(kind: MEDIA) { storeId path } }"))["requestUpload"]
    await anyio.Path(grant["path"], "file").write_bytes(FILE)
    file = {
        "store": grant["storeId"],
        "name": "scan.czi",
        "size": len(FILE),
        "contentHash": "sha256:" + hashlib.sha256(FILE).hexdigest(),
    }
    made = await api.data("mutation($i: FileInput!) { createFile(input: $i) { id } }", {"i": file})
    return str(made["createFile"]["id"])


async def test_a_get_answers_as_its_item_of_a_list(new_api: Any) -> None:
    owner, admin, other = new_api("getter"), new_api("get-admin", admin=True), new_api("get-other")
    sample, ids = await _images(owner, admin)
    # An image with an original file (whose store the file cannot be shown without).
    await make_representation(owner, "ingested", sample=sample, originalFile=await _original_file(owner))
    assert ONE != DEEP
    for api in (owner, admin):
        listed = (await api.data(DEEP, {"sample": sample}))["representations"]
        assert [rep["label"] for rep in listed] == ["first", "second", "third", "ingested"]
        assert listed[-1]["originalFile"] is not None and listed[0]["rois"] and listed[0]["derived"]
        for rep in listed:
            assert (await api.data(ONE, {"id": rep["id"]}))["representation"] == rep
    missing = str(int(ids[-1]) + 10_000)
    nowhere = await other.error(ONE, {"id": missing})
    for rep_id in ids:
        error = await other.error(ONE, {"id": rep_id})
        assert error["extensions"] == nowhere["extensions"] == {"code": "NOT_FOUND"}
        assert error["message"] == nowhere["message"].replace(missing, rep_id)
        assert error["path"] == ["representation"]
