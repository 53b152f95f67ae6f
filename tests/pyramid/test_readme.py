"""The README's pyramid example runs unchanged against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures_servers import process_env

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_pyramid_example_runs(mikro_server: Any, tmp_path: Path) -> None:
    section = README.read_text().split("## Pyramids, and viewers", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the pyramid section has no python example"
    script = tmp_path / "pyramids.py"
    script.write_text(match.group(1))
    env = process_env(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=mikro_server.add_user("readme-pyramids"))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "[([2, 3000, 2500], [1.0, 1.0, 1.0]), ([2, 1500, 1250], [1.0, 2.0, 2.0]), "
        "([2, 750, 625], [1.0, 4.0, 4.0])]"
    )
    assert lines[1] == "{'c': 2, 'y': 750, 'x': 625} 0.8"
    assert lines[2].startswith("['DAPI', 'GFP'] [{'type': 'scale', 'scale': [1.0, 0.25, 0.25]}]")
    assert lines[3] == "3 levels"
