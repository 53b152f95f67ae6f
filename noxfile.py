"""nox sessions: tests, lint, typecheck, bench, bench_server."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "uv|virtualenv"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "mikro", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "mikro", "tests", "benchmarks", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python="3.11")
def bench_server(session: nox.Session) -> None:
    """The reference server's CPU and SQL statements per request type (not part of `bench`'s table)."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/server_requests.py", *session.posargs)
