"""The README's async example runs, unchanged, under asyncio and trio against the reference server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def async_example() -> str:
    section = README.read_text().split("## Async client", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Async client section has no python example"
    return match.group(1)


def test_readme_async_example_runs_on_both_backends(mikro_server: Any, tmp_path: Path) -> None:
    code = async_example()
    assert "asyncio.run(main())" in code and "trio.run(main)" in code
    token = mikro_server.add_user("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
    env.update(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=token)
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("done as readme") for line in lines) == 2  # once per backend
    assert any(line.startswith("HeLa by readme") for line in lines)
