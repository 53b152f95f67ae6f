"""The README's ingest example runs as written against the reference server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_servers import MikroServer, process_env

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.usefixtures("no_ambient_config")


def test_readme_ingest_example_runs(mikro_server: MikroServer, tmp_path: Path) -> None:
    section = README.read_text().split("## Ingesting microscope files", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the ingest section has no python example"
    (tmp_path / "example.py").write_text(match.group(1))
    env = process_env(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=mikro_server.add_user("readme"))
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["2 created, 0 skipped, 0 failed", "0 created, 2 skipped"]
    assert lines[2].startswith("['c', 'z', 'y', 'x'] ['DAPI', 'GFP']")
