"""The README's image example (upload, lazy read, compute off the loop) runs unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def images_example() -> str:
    section = README.read_text().split("## Images: upload, read, compute", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Images section has no python example"
    return match.group(1)


def test_readme_images_example_runs(mikro_server: Any, tmp_path: Path) -> None:
    token = mikro_server.add_user("readme-images")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
    env.update(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=token)
    script = tmp_path / "images.py"
    script.write_text(images_example())
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "cells ['c', 'z', 'y', 'x'] [2, 16, 256, 256] HeLa" in result.stdout
    assert "max projection {'c': 2, 'y': 256, 'x': 256}" in result.stdout
