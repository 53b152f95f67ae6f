"""The benchmark harness runs end to end on one cheap bar and reports it (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_bar_prints_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "ingest_local"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ingest to a local folder" in proc.stdout
    assert "Setup" in proc.stdout

    report = json.loads(out.read_text())
    assert report["setup"]["mode"] == "quick"
    (bar,) = report["bars"]
    assert bar["name"] == "ingest_local"
    assert bar["verdict"] in {"PASS", "MISS"}, bar  # ERROR would mean a contender failed to run
    figures = {f["contender"]: f for f in bar["figures"]}
    assert set(figures) == {
        "mikro",
        "raw obstore LocalStore put",
        "raw put, + each image's small objects",
        "zarr3 LocalStore",
    }
    for fig in figures.values():
        assert fig["error"] is None, fig
        assert fig["value"] > 0
        assert fig["cpu_s_per_gib"] > 0
        assert len(fig["runs"]) == 3  # medians of three interleaved runs
    assert figures["zarr3 LocalStore"]["mikro_ratio"] > 0
    # The verdict shown in the table is the one in the JSON.
    assert bar["verdict"] in proc.stdout
