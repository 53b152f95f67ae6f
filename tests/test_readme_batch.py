"""The README's batch example (``create_representations``) runs unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def batch_example() -> str:
    section = README.read_text().split("### Many images at once", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the batch section has no python example"
    return match.group(1)


def test_readme_batch_example_runs(mikro_server: Any, tmp_path: Path) -> None:
    token = mikro_server.add_user("readme-batch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
    env.update(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=token)
    script = tmp_path / "batch.py"
    script.write_text(batch_example())
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "96 plate-7-field-0 [256, 256]" in result.stdout
