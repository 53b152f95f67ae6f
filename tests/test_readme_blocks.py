"""Every code block of the README runs as written against a fresh reference server.

The blocks are found generically (any ```python / ```bash / ```sh fence, whoever wrote the section),
so a block added to the README is tested without touching this file. Each runs in a fresh process
with ``MIKRO_URL`` / ``MIKRO_TOKEN`` of a new user set, the way a reader who followed "Running the
server" would have them. A block that genuinely cannot run in a test (it installs packages, starts a
long-lived server, needs a cluster) carries, on the line right above its fence,

    <!-- readme-test: skip: why it cannot run here -->

and the reason is required, so a skip always says why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_servers import process_env

README = Path(__file__).resolve().parents[1] / "README.md"

_FENCE = re.compile(r"^```(?P<lang>[a-z]*)[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(?P<reason>[^>]*?)\s*-->\s*$")
_RUNNABLE = {"python": "python", "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}

#: What a block prints that a reader would look for (by the heading of its section).
EXPECTED_OUTPUT = {
    "Async client": ["done as ", "HeLa by "],
    "Images: upload, read, compute": [
        "cells ['c', 'z', 'y', 'x'] [2, 16, 256, 256] HeLa",
        "max projection {'c': 2, 'y': 256, 'x': 256}",
    ],
    "Ingest on a dask cluster": ["3 images created on the cluster, 0 failed"],
    "Files and attachments": [
        "stack.raw 8192 blake3:",
        "['stack.raw', 'protocol.txt']",
        "fix 10 min in 4% PFA",
    ],
}


@dataclass(frozen=True)
class Block:
    line: int
    heading: str
    kind: str  # "python" or "shell"
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.kind}-{re.sub(r'[^a-z0-9]+', '-', self.heading.lower()).strip('-')}"


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in _FENCE.finditer(text):
        kind = _RUNNABLE.get(match["lang"])
        if kind is None:
            continue
        before = text[: match.start()]
        headings = re.findall(r"^#+ (.+)$", before, re.MULTILINE)
        previous_line = before.rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(previous_line)
        blocks.append(
            Block(
                line=before.count("\n") + 1,
                heading=headings[-1] if headings else "",
                kind=kind,
                code=match["code"],
                skip=skip["reason"] if skip else None,
            )
        )
    return blocks


BLOCKS = readme_blocks(README.read_text())


def test_the_extraction_finds_the_blocks_and_their_skips() -> None:
    sample = (
        "# A\n```python\nprint(1)\n```\n## B\n<!-- readme-test: skip: starts a server -->\n"
        "```bash\nmikro serve\n```\n```text\nnot code\n```\n"
    )
    found = readme_blocks(sample)
    assert [(b.heading, b.kind, b.code, b.skip) for b in found] == [
        ("A", "python", "print(1)\n", None),
        ("B", "shell", "mikro serve\n", "starts a server"),
    ]
    assert sum(b.kind == "python" for b in BLOCKS) >= 4
    for block in BLOCKS:
        assert block.skip != "", f"README line {block.line}: a skip must say why"


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip is None], ids=lambda b: b.id)
def test_readme_block_runs_as_written(block: Block, mikro_server: Any, tmp_path: Path) -> None:
    token = mikro_server.add_user("readme")
    env = process_env()
    # The reader's shell has this venv's `mikro` on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=token)
    if block.kind == "python":
        script = tmp_path / "block.py"
        command = [sys.executable, str(script)]
    else:
        script = tmp_path / "block.sh"
        command = ["bash", "-euo", "pipefail", str(script)]
    script.write_text(block.code)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    where = f"README line {block.line} ({block.heading})"
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"
    for expected in EXPECTED_OUTPUT.get(block.heading, []):
        assert expected in result.stdout, f"{where}: {expected!r} not in its output:\n{result.stdout}"
