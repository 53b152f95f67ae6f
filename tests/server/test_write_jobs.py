"""The frequent mutations write in one synchronous job (a writer thread on SQLite, ``run_sync`` on
PostgreSQL): a batch that fails part-way through its writes leaves nothing behind, on both databases,
and one that succeeds writes every row and link it names."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.fixtures_servers import MikroServer, ServerFactory

UPLOADS = "mutation($n: Int!) { requestUploads(count: $n, kind: MEDIA) { storeId path } }"
SAMPLE = 'mutation { createSample(input: {name: "s"}) { id } }'
CREATE_FILES = """mutation($inputs: [FileInput!]!) {
  createFiles(inputs: $inputs) { id name store { id path } samples { id } } }"""
FILES = "{ files { id name store { id path } samples { id } } }"
RELEASE = "mutation($s: [ID!]!) { releaseUploads(stores: $s) }"
DATA = b"a protocol"
HASH = "sha256:" + hashlib.sha256(DATA).hexdigest()


def _files_input(grants: list[dict[str, Any]], sample: str) -> list[dict[str, Any]]:
    for grant in grants:
        (Path(grant["path"]) / "file").write_bytes(DATA)
    return [
        {"store": g["storeId"], "name": f"f{i}", "size": len(DATA), "contentHash": HASH, "samples": [sample]}
        for i, g in enumerate(grants)
    ]


def test_a_batch_failing_at_its_last_input_writes_nothing(
    server_factory: ServerFactory, database_settings: dict[str, Any]
) -> None:
    server: MikroServer = server_factory.start(**database_settings)
    alice, bob = server.add_user("alice"), server.add_user("bob")
    own = server.query(SAMPLE, token=alice)["data"]["createSample"]["id"]
    others = server.query(SAMPLE, token=bob)["data"]["createSample"]["id"]
    grants = server.query(UPLOADS, {"n": 3}, token=alice)["data"]["requestUploads"]
    inputs = _files_input(grants, own)

    # The last input links to another user's sample: found only after the batch's rows were written.
    refused = server.query(
        CREATE_FILES, {"inputs": [*inputs[:2], {**inputs[2], "samples": [others]}]}, token=alice
    )
    assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert refused["errors"][0]["message"].startswith("inputs[2]: ")
    assert server.query(FILES, token=alice)["data"]["files"] == []

    # Its stores were not used up, and the same batch without the bad link records every file and link.
    made = server.query(CREATE_FILES, {"inputs": inputs}, token=alice)["data"]["createFiles"]
    assert [f["name"] for f in made] == ["f0", "f1", "f2"]
    assert [f["store"]["id"] for f in made] == [g["storeId"] for g in grants]
    listed = server.query(FILES, token=alice)["data"]["files"]
    # The answer shows each store as a later read does (recorded: the file's own path).
    assert sorted((f["id"], f["store"]["path"]) for f in listed) == sorted(
        (f["id"], f["store"]["path"]) for f in made
    )
    assert all(f["store"]["path"].endswith("/file") for f in made)
    assert all(f["samples"] == [{"id": own}] for f in listed)

    # Releasing a recorded store with unused ones releases none of them.
    unused = [g["storeId"] for g in server.query(UPLOADS, {"n": 2}, token=alice)["data"]["requestUploads"]]
    conflict = server.query(RELEASE, {"s": [*unused, grants[0]["storeId"]]}, token=alice)
    assert conflict["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert server.query(RELEASE, {"s": unused}, token=alice)["data"]["releaseUploads"] == unused
