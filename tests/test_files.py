"""Files kept as they are, through a real session: upload, download, streamed read, links, delete,
other users, cancellation.

Everything runs against the reference server over a real socket (folder store, or moto's S3 with STS
grants), on both anyio backends.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import blake3
import numpy as np
import pytest

import mikro
from mikro.datalayer._files import PART_BYTES, PIECE_BYTES
from tests.fixtures_servers import MikroServer, process_env, unique

pytestmark = pytest.mark.usefixtures("no_ambient_config")

#: More than one multipart part, and not a whole number of read pieces.
LARGE = PART_BYTES + PIECE_BYTES // 2 + 12_345


def random_bytes(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def content_hash(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


@pytest.fixture
async def m(server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    async with mikro.connect(server.url, token=server.add_user("files"), timeout=60) as session:
        yield session


def stored_objects(server: MikroServer, request: pytest.FixtureRequest) -> set[str]:
    """Every object of every MEDIA store on the server's object storage, and every unfinished multipart
    upload there (S3 keeps those hidden, and bills them)."""
    if "s3_bucket" not in server.settings:
        root = server.data_dir / "objects"
        return {str(p.relative_to(root)) for p in (root / "media").rglob("*") if p.is_file()}
    moto = request.getfixturevalue("moto_s3")
    s3 = moto.client()
    listed = s3.list_objects_v2(Bucket=moto.bucket, Prefix="media/").get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=moto.bucket, Prefix="media/").get("Uploads", [])
    return {o["Key"] for o in listed} | {f"upload:{u['Key']}" for u in uploads}


def unfinished_media_stores(server: MikroServer) -> int:
    with sqlite3.connect(server.database_path) as db:
        (count,) = db.execute("SELECT count(*) FROM stores WHERE kind = 'MEDIA' AND NOT populated").fetchone()
    return int(count)


@pytest.mark.anyio
async def test_upload_download_and_stream_are_byte_identical(
    m: mikro.Mikro, tmp_path: Path, server: MikroServer
) -> None:
    data = random_bytes(LARGE)
    source = tmp_path / "scan.ome.tif"
    source.write_bytes(data)
    seen: list[tuple[int, int]] = []

    file = await m.upload_file(source, tags=["raw"], progress=lambda done, total: seen.append((done, total)))

    assert (file.name, file.size, file.content_hash) == ("scan.ome.tif", len(data), content_hash(data))
    assert file.media_type == "image/tiff"  # guessed from the name
    assert file.tags == ["raw"] and file.representations == []
    assert seen[-1] == (len(data), len(data)) and len(seen) > 1

    target = await m.download_file(file, tmp_path / "copy.tif")
    assert target == tmp_path / "copy.tif" and target.read_bytes() == data
    # Into a folder: under the file's own name; by id as well as by model.
    (tmp_path / "out").mkdir()
    assert (await m.download_file(file.id, tmp_path / "out")).read_bytes() == data
    assert sorted(os.listdir(tmp_path / "out")) == ["scan.ome.tif"]  # no temporary file left

    chunks = []
    async with m.open_file(file) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    assert len(chunks) > 1 and all(isinstance(c, bytes) for c in chunks)
    assert b"".join(chunks) == data
    assert (await m.get_file(file.id)).content_hash == content_hash(data)


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["file"], indirect=True)
async def test_bytes_upload_needs_a_name_and_keeps_the_media_type_given(m: mikro.Mikro) -> None:
    with pytest.raises(mikro.ValidationError, match="name"):
        await m.upload_file(b"a,b\n1,2\n")
    with pytest.raises(mikro.ValidationError, match="not a file"):
        await m.upload_file(Path("no-such-file.csv"))
    file = await m.upload_file(b"a,b\n1,2\n", name="counts.csv")
    assert file.media_type == "text/csv" and file.size == 8
    other = await m.upload_file(b"{}", name="notes", media_type="application/json")
    assert other.media_type == "application/json"
    async with m.open_file(other) as stream:
        assert [chunk async for chunk in stream] == [b"{}"]
    empty = await m.upload_file(b"", name="empty.txt")
    assert (empty.size, empty.content_hash) == (0, content_hash(b""))
    async with m.open_file(empty) as stream:
        assert [chunk async for chunk in stream] == []


@pytest.mark.anyio
async def test_delete_removes_the_objects(
    m: mikro.Mikro, server: MikroServer, request: pytest.FixtureRequest
) -> None:
    before = stored_objects(server, request)
    file = await m.upload_file(random_bytes(1000, seed=1), name="protocol.pdf")
    assert file.media_type == "application/pdf"
    added = stored_objects(server, request) - before
    assert len(added) == 1 and next(iter(added)).startswith(file.store.key)

    assert await m.delete_file(file) == file.id
    assert stored_objects(server, request) == before
    with pytest.raises(mikro.NotFoundError):
        await m.get_file(file.id)


@pytest.mark.anyio
async def test_a_cancelled_upload_leaves_no_record_and_no_objects(
    m: mikro.Mikro, tmp_path: Path, server: MikroServer, request: pytest.FixtureRequest
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(random_bytes(3 * PART_BYTES, seed=2))
    objects, unfinished = stored_objects(server, request), unfinished_media_stores(server)

    with anyio.CancelScope() as scope:

        def cancel_once_under_way(done: int, total: int) -> None:
            if done > PART_BYTES:  # a multipart upload is under way: its first part is on its way
                scope.cancel()

        await m.upload_file(source, name=unique("cancelled"), progress=cancel_once_under_way)
    assert scope.cancelled_caught

    assert stored_objects(server, request) == objects
    assert unfinished_media_stores(server) == unfinished
    assert await m.list_files(name_contains="cancelled") == []


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["file"], indirect=True)
async def test_links_round_trip(m: mikro.Mikro) -> None:
    sample = await m.create_sample(unique("s"))
    experiment = await m.create_experiment(unique("e"))
    dataset = await m.create_dataset(unique("d"))
    image = await m.create_representation(np.zeros((8, 8), np.uint8), name="attached-to")
    attachment = await m.upload_file(
        b"id,area\n",
        name=unique("measurements") + ".csv",
        representations=[image],
        samples=[sample],
        experiments=[experiment.id],
        datasets=[dataset],
        tags=["table"],
    )
    got = await m.get_file(attachment.id)
    assert [r.id for r in got.representations or []] == [image.id]
    assert [s.id for s in got.samples or []] == [sample.id]
    assert [e.id for e in got.experiments or []] == [experiment.id]
    assert [d.id for d in got.datasets or []] == [dataset.id]
    for found in (
        await m.list_files(representation=image),
        await m.list_files(sample=sample),
        await m.list_files(experiment=experiment),
        await m.list_files(dataset=dataset),
        await m.list_files(tags=["table"], name_contains=attachment.name[:12]),
        await m.list_files(content_hash=attachment.content_hash, ids=[attachment.id]),
    ):
        assert [f.id for f in found] == [attachment.id]
    assert [f.id async for f in m.iter_files(sample=sample, page_size=1)] == [attachment.id]

    # An original: images made from it point at it, and it lists them with the ones it is attached to.
    original = await m.upload_file(b"II*\x00" + bytes(60), name="stack.tif")
    made = await m.create_representation(
        np.ones((4, 4), np.uint16), name="from-stack", original_file=original
    )
    assert made.original_file is not None and made.original_file.id == original.id
    await m.update_file(original, representations=[image])
    listed = await m.get_file(original)
    assert sorted(r.id for r in listed.representations or []) == sorted([image.id, made.id])
    assert [f.id for f in await m.list_files(representation=made)] == [original.id]
    assert (await m.get_representation(made.id)).original_file.id == original.id  # type: ignore[union-attr]

    # A list given replaces the links of its kind; the others stay.
    updated = await m.update_file(attachment, name="renamed.csv", samples=[], tags=["a", "b"])
    assert (updated.name, updated.tags, updated.samples) == ("renamed.csv", ["a", "b"], [])
    assert [d.id for d in updated.datasets or []] == [dataset.id]
    assert await m.list_files(sample=sample) == []

    # Deleting the original keeps the image; deleting linked objects drops only the links.
    await m.delete_file(original)
    assert (await m.get_representation(made.id)).original_file is None
    await m.delete_dataset(dataset)
    assert (await m.get_file(attachment)).datasets == []


def _original_of(rep: mikro.Representation) -> tuple[str, str, str, str] | None:
    found = rep.original_file
    return None if found is None else (found.id, found.name, found.content_hash, found.store.path)


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["file"], indirect=True)
async def test_a_list_of_images_shows_each_ones_original(m: mikro.Mikro) -> None:
    """A list answers every image's original with its store (two images may share one, an image made
    from no file has none), and leaves out an original deleted since."""
    dataset = await m.create_dataset(unique("originals"))
    originals = [
        await m.upload_file(f"scan {i}".encode(), name=unique(f"scan{i}") + ".tif") for i in range(3)
    ]
    expected: dict[str, tuple[str, str, str, str] | None] = {}
    for i, original in enumerate([*originals, originals[0], None]):
        pixels = np.full((4, 4), i, np.uint8)
        rep = await m.create_representation(pixels, name=f"img{i}", dataset=dataset, original_file=original)
        expected[rep.id] = None if original is None else _original_of(rep)
    assert all(expected[rep_id] for rep_id in list(expected)[:4])
    assert {rep.id: _original_of(rep) for rep in await m.list_representations(dataset=dataset)} == expected

    await m.delete_file(originals[1])
    expected = {rep_id: None if v and v[0] == originals[1].id else v for rep_id, v in expected.items()}
    assert {rep.id: _original_of(rep) for rep in await m.list_representations(dataset=dataset)} == expected


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["file"], indirect=True)
async def test_another_user_cannot_see_read_or_link_a_file(
    m: mikro.Mikro, server: MikroServer, tmp_path: Path
) -> None:
    secret = await m.upload_file(b"confidential", name=unique("secret") + ".txt")
    mine = await m.create_representation(np.zeros((4, 4), np.uint8), name="alice's")
    async with mikro.connect(server.url, token=server.add_user("intruder"), timeout=60) as b:
        with pytest.raises(mikro.NotFoundError):
            await b.get_file(secret.id)
        assert secret.id not in {f.id for f in await b.list_files(name_contains="secret")}
        for attempt in (
            b.update_file(secret.id, name="mine now"),
            b.delete_file(secret.id),
            b.create_representation(np.zeros((4, 4), np.uint8), name="theirs", original_file=secret.id),
        ):
            with pytest.raises(mikro.NotFoundError, match="file"):
                await attempt
        assert await b.list_representations(name_contains="theirs") == []
        # Holding alice's File model (ids leak) gets bob no grant to its bytes: not found, as for the rest.
        with pytest.raises(mikro.NotFoundError, match="file"):
            await b.download_file(secret, tmp_path / "stolen")
        with pytest.raises(mikro.NotFoundError, match="file"):
            await _read_all(b, secret)
        assert os.listdir(tmp_path) == []
        # Nor can bob attach his file to alice's image (and no half-made file of his is left).
        with pytest.raises((mikro.NotFoundError, mikro.PermissionDeniedError)):
            await b.upload_file(b"x", name=unique("attach"), representations=[mine.id])
        assert await b.list_files() == []
    assert (await m.get_file(secret)).name == secret.name


async def _read_all(session: mikro.Mikro, file: Any) -> bytes:
    async with session.open_file(file) as stream:
        return b"".join([chunk async for chunk in stream])


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["file"], indirect=True)
async def test_a_changed_object_fails_verification_and_leaves_no_download(
    m: mikro.Mikro, tmp_path: Path
) -> None:
    data = random_bytes(PIECE_BYTES + 100, seed=3)
    file = await m.upload_file(data, name="kept.bin")
    stored = Path(file.store.path)
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit flipped

    with pytest.raises(mikro.StorageError, match="does not match"):
        await m.download_file(file, tmp_path / "kept.bin")
    assert os.listdir(tmp_path) == []
    with pytest.raises(mikro.StorageError, match="does not match"):
        await _read_all(m, file)


MEMORY_PROBE = """
import asyncio, os, resource, sys

import mikro


async def main() -> None:
    async with mikro.connect() as m:
        await m.upload_file(sys.argv[2], name="warm-up.txt")  # imports, pools, first grant
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        file = await m.upload_file(sys.argv[1])
        after_upload = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await m.download_file(file, sys.argv[1] + ".copy")
        after_download = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(file.size, (after_upload - before) // 1024, (after_download - before) // 1024)


asyncio.run(main())
"""


@pytest.mark.slow
def test_a_large_file_moves_through_bounded_memory(mikro_server: MikroServer, tmp_path: Path) -> None:
    # Sparse: 256 MiB on disk costs nothing to make; the upload still reads, hashes and writes all of it.
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(256 * 1024 * 1024)
    small = tmp_path / "small.txt"
    small.write_bytes(b"warm")
    env = process_env(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=mikro_server.add_user("memory"))
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(big), str(small)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    size, upload_growth_mib, download_growth_mib = map(int, result.stdout.split())
    assert size == 256 * 1024 * 1024
    # Peak RSS grows by a few parts' worth, not by the file: (PARTS_IN_FLIGHT + 1) parts and slack.
    assert upload_growth_mib < 96 and download_growth_mib < 96, (upload_growth_mib, download_growth_mib)
    assert (tmp_path / "big.bin.copy").stat().st_size == size


@pytest.mark.anyio
async def test_concurrent_uploads_are_all_recorded_each_with_its_own_bytes(
    m: mikro.Mikro, tmp_path: Path
) -> None:
    # Uploads finishing together share createFiles requests: each still gets its own record, and the
    # File returned shows its links (the batched answer asks for them, as a lone upload's does).
    sample = await m.create_sample(unique("s"))
    sources = []
    for i in range(12):
        sources.append(tmp_path / f"note-{i}.csv")
        sources[-1].write_bytes(random_bytes(1000 + i, seed=i))
    files: dict[str, Any] = {}

    async def upload(path: Path) -> None:
        files[path.name] = await m.upload_file(path, tags=[path.stem], samples=[sample])

    async with anyio.create_task_group() as tg:
        for path in sources:
            tg.start_soon(upload, path)
    assert len({f.id for f in files.values()}) == len(sources)
    for path in sources:
        file = files[path.name]
        assert (file.name, file.size, file.content_hash) == (
            path.name,
            path.stat().st_size,
            content_hash(path.read_bytes()),
        )
        assert file.tags == [path.stem] and file.media_type == "text/csv"
        assert [s.id for s in file.samples or []] == [sample.id]
        copy = await m.download_file(file, tmp_path / f"copy-{path.name}")
        assert copy.read_bytes() == path.read_bytes()


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["file"], indirect=True)
async def test_a_create_files_batch_with_a_bad_input_names_it_and_records_none(m: mikro.Mikro) -> None:
    from mikro.datalayer import upload_file

    inputs = []
    for i in range(3):
        store, store_id = await m._new_store("MEDIA")
        data = random_bytes(100 + i, seed=i)
        written = await anyio.to_thread.run_sync(upload_file, store, data)
        inputs.append(
            {
                "store": store_id,
                "name": unique(f"batch{i}"),
                "size": written.size,
                "content_hash": content_hash(data),
            }
        )
    wrong = [*inputs[:2], {**inputs[2], "size": 1}]
    with pytest.raises(mikro.GraphQLError, match=r"inputs\[2\].*has 102 bytes, not 1"):
        await m._create_file_rows(wrong)
    assert await m.list_files(name_contains="batch") == []

    created = await m._create_file_rows(inputs)
    assert [(f.name, f.size) for f in created] == [(i["name"], i["size"]) for i in inputs]
