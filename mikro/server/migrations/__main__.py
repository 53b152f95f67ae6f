"""Write a new revision for the models' changes: ``python -m mikro.server.migrations "what changed"``.

Autogenerates against a database at the newest revision (an in-memory SQLite), numbering the revision
after the newest one. Review what it wrote (autogenerate misses renames, and a new NOT NULL column of an
existing table needs a server default), then run tests/server/test_migrations.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import Script
from sqlalchemy import create_engine

from mikro.server._migrate import alembic_config, head_revision


def main() -> None:
    message = " ".join(sys.argv[1:]) or "model changes"
    number = f"{int(head_revision()) + 1:04d}"
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
        config = alembic_config(conn)
        config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
        script = command.revision(config, message=message, autogenerate=True, rev_id=number)
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if isinstance(script, Script) and Path(ruff).exists():
        subprocess.run([ruff, "format", "--quiet", script.path], check=False)


if __name__ == "__main__":
    main()
