"""Build the database of a released mikro that tests/server/test_migrations.py upgrades.

Run it with the release's mikro importable (not this checkout's), e.g. from a checkout of the release:

    git archive <release commit> | tar -x -C /tmp/release
    PYTHONPATH=/tmp/release .venv/bin/python tests/server/release_db/make.py

It serves a fresh data dir with that mikro, fills it through the client (every kind of row, pixels and a
parquet table) and writes ``data/`` (database, objects, admin token) and ``expected.json`` beside itself.
The PostgreSQL twin is built from the same rows by the test (``copy_to_postgres``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 14


def pixels(index: int) -> np.ndarray[Any, Any]:
    """The pixels of image ``index`` (the test regenerates them to compare)."""
    return np.random.default_rng(SEED + index).integers(0, 4000, (2, 3, 12, 10), dtype=np.uint16)


def main() -> None:
    import anyio
    import pandas as pd

    import mikro

    data = HERE / "data"
    shutil.rmtree(data, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "mikro", "serve", "--data-dir", str(data), "--port", "0"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert server.stdout is not None
        while not (found := re.search(r"listening on (\S+)", server.stdout.readline())):
            assert server.poll() is None, "mikro serve did not start"
        url = found.group(1)
        admin = (data / "admin-token").read_text().strip()

        async def fill() -> dict[str, Any]:
            async with mikro.connect(url, token=admin) as m:
                sample = await m.create_sample("HeLa", description="cervix", tags=["old", "release"])
                experiment = await m.create_experiment("drug screen", tags=["old"])
                dataset = await m.create_dataset("plate 1", tags=["old"])
                first = await m.create_representation(
                    pixels(0),
                    name="cells",
                    dims="czyx",
                    sample=sample,
                    experiments=[experiment],
                    dataset=dataset,
                    tags=["raw"],
                    channels=[{"name": "DAPI"}, {"name": "GFP"}],
                    pixel_size={"x": 0.1, "y": 0.1, "z": 0.5},
                    acquisition_date=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                )
                second = await m.create_representation(
                    pixels(1), name="cells denoised", dims="czyx", origins=[first], dataset=dataset
                )
                roi = await m.create_roi(
                    first, "RECTANGLE", [[0, 0, 1, 2, 3], [0, 0, 1, 5, 6]], label="nucleus"
                )
                await m.create_metric(first, "area", {"px": 12})
                await m.create_metric(first, "mean", 3.5, roi=roi)
                await m.create_thumbnail(first, _png())
                await m.create_table(
                    pd.DataFrame({"cell": [1, 2, 3], "area": [10.5, 11.0, 9.25]}),
                    name="areas",
                    origins=[first],
                )
                return {"representations": [first.id, second.id]}

        expected = anyio.run(fill)
    finally:
        server.terminate()
        server.wait(30)
    with sqlite3.connect(data / "mikro.sqlite3") as db:
        db.execute("VACUUM")
    for leftover in ("mikro.sqlite3-wal", "mikro.sqlite3-shm", "auth-epoch"):
        (data / leftover).unlink(missing_ok=True)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(out, format="PNG")
    return out.getvalue()


if __name__ == "__main__":
    main()
