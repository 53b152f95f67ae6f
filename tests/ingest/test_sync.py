"""The blocking twin of ``m.ingest`` in a plain script."""

from __future__ import annotations

from pathlib import Path

import pytest

from mikro.sync import connect
from tests.fixtures_servers import MikroServer
from tests.ingest import _files

pytestmark = pytest.mark.usefixtures("no_ambient_config")


def test_sync_ingest_reports_and_reruns(mikro_server: MikroServer, tmp_path: Path) -> None:
    _files.plain_tiff(tmp_path / "a.tif")
    seen = []
    with connect(mikro_server.url, token=mikro_server.add_user("sync")) as m:
        report = m.ingest(tmp_path, tags=["sync"], on_progress=seen.append)
        assert (report.created, report.ok) == (1, True)
        rep = m.get_representation(report.files[0].images[0])
        assert rep.tags == ["sync"] and rep.source_fingerprint == report.files[0].fingerprint
        assert m.ingest(tmp_path).skipped == 1
    assert seen and seen[-1].files_done == seen[-1].files_total == 1
