"""createFile refuses what it cannot vouch for, with a code and nothing written; unfinished file
uploads are collected like any abandoned upload."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.fixtures_servers import MikroServer, ServerFactory

UPLOAD = "mutation($k: UploadKind!) { requestUpload(kind: $k) { storeId path } }"
CREATE = "mutation($i: FileInput!) { createFile(input: $i) { id size contentHash mediaType } }"
FILES = "query($s: String) { files(filter: {search: $s}) { id } }"
DATA = b"%PDF-1.7 a protocol"
HASH = "sha256:" + hashlib.sha256(DATA).hexdigest()


def _code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


def _reserve(server: MikroServer, token: str, kind: str = "MEDIA") -> dict[str, Any]:
    grant: dict[str, Any] = server.query(UPLOAD, {"k": kind}, token=token)["data"]["requestUpload"]
    return grant


def test_create_file_checks_the_object_and_the_input(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("files-input")
    grant = _reserve(mikro_server, token)
    good = {"store": grant["storeId"], "name": "protocol.pdf", "size": len(DATA), "contentHash": HASH}

    def create(**changes: Any) -> dict[str, Any]:
        body: dict[str, Any] = mikro_server.query(CREATE, {"i": {**good, **changes}}, token=token)
        return body

    assert _code(create()) == "BAD_USER_INPUT"  # no bytes uploaded yet
    (Path(grant["path"]) / "file").write_bytes(DATA)
    assert _code(create(size=len(DATA) + 1)) == "BAD_USER_INPUT"
    assert _code(create(contentHash="md5:abc")) == "BAD_USER_INPUT"
    assert _code(create(contentHash=HASH.upper())) == "BAD_USER_INPUT"
    assert _code(create(mediaType="pdf")) == "BAD_USER_INPUT"
    assert _code(create(name="  ")) == "BAD_USER_INPUT"
    assert _code(create(size=-1)) == "BAD_USER_INPUT"
    zarr_store = _reserve(mikro_server, token, "ZARR")["storeId"]
    assert _code(create(store=zarr_store)) == "BAD_USER_INPUT"
    assert mikro_server.query(FILES, {"s": "protocol"}, token=token)["data"]["files"] == []

    # A size beyond 32 bits reaches the check (BigInt, not Int); the object still has to have it.
    big = create(size=5 * 2**30)
    assert _code(big) == "BAD_USER_INPUT" and "not 5368709120" in big["errors"][0]["message"]
    made = create(mediaType="application/pdf")["data"]["createFile"]
    assert made["size"] == len(DATA) and made["contentHash"] == HASH
    assert _code(create()) == "CONFLICT"  # one file per store
    other = mikro_server.add_user("files-other")
    assert _code(mikro_server.query(CREATE, {"i": good}, token=other)) in {"FORBIDDEN", "NOT_FOUND"}


def test_abandoned_file_uploads_are_collected(server_factory: ServerFactory) -> None:
    server = server_factory.start(abandoned_upload_age=0)
    token = server.add_user("alice")
    abandoned = _reserve(server, token)
    (Path(abandoned["path"]) / "file").write_bytes(DATA)
    server.restart()  # maintenance runs at start-up
    assert not Path(abandoned["path"]).exists()
    size = len(DATA)
    body = server.query(
        CREATE,
        {"i": {"store": abandoned["storeId"], "name": "a", "size": size, "contentHash": HASH}},
        token=token,
    )
    assert _code(body) == "NOT_FOUND"
