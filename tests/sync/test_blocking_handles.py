"""What the sync facade hands out blocks where it is used: no coroutine reaches a script."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd

import mikro.sync


def test_table_data_reads_block_in_a_script(session: mikro.sync.SyncMikro) -> None:
    frame = pd.DataFrame({"area": [1.5, 2.5], "label": ["a", "b"]})
    table = session.create_table(frame, name="measurements")
    assert table.id in [t.id for t in session.search_tables("measure")]
    pd.testing.assert_frame_equal(table.data.pandas(), frame)
    assert session.get_table(table.id).data.arrow().num_rows == 2
    # The handle from the facade's own method blocks too.
    assert session.open_table_data(table).pandas().shape == (2, 2)


def test_a_representations_notebook_view_shows_its_thumbnail(session: mikro.sync.SyncMikro) -> None:
    rep = session.create_representation(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), name="view")
    page = rep._repr_html_()
    found = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert found, page
    png = base64.b64decode(found.group(1))
    assert png == session.thumbnail_png(rep.thumbnails[0])  # type: ignore[index]
