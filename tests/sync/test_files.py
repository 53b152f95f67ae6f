"""Files through the sync facade: the blocking twins upload, download and stream (both portal backends)."""

from __future__ import annotations

from pathlib import Path

import blake3

import mikro.sync


def test_files_round_trip_through_the_blocking_twins(session: mikro.sync.SyncMikro, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    source = tmp_path / "protocol.pdf"
    source.write_bytes(data)
    file = session.upload_file(source, tags=["protocol"])
    assert (file.media_type, file.size) == ("application/pdf", len(data))
    assert file.content_hash == "blake3:" + blake3.blake3(data).hexdigest()
    assert session.download_file(file, tmp_path / "copy.pdf").read_bytes() == data
    with session.open_file(file) as chunks:
        assert b"".join(chunks) == data
    assert [f.id for f in session.iter_files(ids=[file.id])] == [file.id]
    session.delete_file(file)
    assert session.list_files(ids=[file.id]) == []
