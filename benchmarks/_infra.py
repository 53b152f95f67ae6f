"""The real parts a benchmark run talks to: moto's S3 server and `mikro serve`, each in its own process.

Both run as SEPARATE processes so that `time.process_time()` in the benchmark process counts only the
client's own CPU (moto's in-process ThreadedMotoServer would be counted too).
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["MikroServer", "MotoS3", "free_port", "process_cpu_seconds", "start_mikro_server", "start_moto"]

_ACCESS_KEY = "testing"
_SECRET_KEY = "testing"
_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    role_arn: str = "arn:aws:iam::123456789012:role/mikro-bench"
    #: The moto process (None where this side did not start it): its CPU is what the bars' store costs.
    pid: int | None = None

    def cpu_seconds(self) -> float:
        """CPU time the moto process has used so far (nan where its pid is not known here)."""
        return float("nan") if self.pid is None else process_cpu_seconds(self.pid)

    def create_bucket(self, bucket: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        ).create_bucket(Bucket=bucket)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1.0)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url}: not up after {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def start_moto(workdir: Path) -> Iterator[MotoS3]:
    """moto's S3+STS server as a subprocess on a free loopback port."""
    port = free_port()
    log = workdir / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_http(f"{endpoint}/moto-api/", proc, 30.0, log)
        yield MotoS3(endpoint, _ACCESS_KEY, _SECRET_KEY, _REGION, pid=proc.pid)
    finally:
        _stop(proc)


@dataclass(frozen=True)
class MikroServer:
    url: str
    token: str
    data_dir: Path
    bucket: str | None
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system), from /proc."""
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # utime and stime are fields 14 and 15 of stat(5), counted after the ")" that ends the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_LISTENING = re.compile(rb"listening on (http://\S+/graphql)")


@contextlib.contextmanager
def start_mikro_server(
    workdir: Path,
    *,
    s3: MotoS3 | None = None,
    bucket: str | None = None,
    s3_endpoint: str | None = None,
    name: str = "mikro",
) -> Iterator[MikroServer]:
    """`mikro serve --port 0` in a fresh data dir; S3-backed when `s3` is given, else a local folder.

    `s3_endpoint` overrides the S3 endpoint the server hands out in grants (the byte-counting proxy); STS
    stays on moto directly.
    """
    data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    token = "bench-admin-token-0123456789"
    env = {**os.environ, "MIKRO_ADMIN_TOKEN": token, "MIKRO_LOG_LEVEL": "warning", "MIKRO_BENCH_FLOOR": "1"}
    for key in [k for k in env if k.startswith("MIKRO_S3_") or k == "MIKRO_STS_ENDPOINT"]:
        del env[key]
    if s3 is not None:
        assert bucket is not None
        s3.create_bucket(bucket)
        env.update(
            MIKRO_S3_ENDPOINT=s3_endpoint or s3.endpoint,
            MIKRO_STS_ENDPOINT=s3.endpoint,
            MIKRO_S3_BUCKET=bucket,
            MIKRO_S3_ACCESS_KEY=s3.access_key,
            MIKRO_S3_SECRET_KEY=s3.secret_key,
            MIKRO_S3_REGION=s3.region,
            MIKRO_S3_ROLE_ARN=s3.role_arn,
        )
    exe = shutil.which("mikro", path=str(Path(sys.executable).parent)) or "mikro"
    log = data_dir.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60.0
        url = None
        while url is None:
            match = _LISTENING.search(log.read_bytes())
            if match:
                url = match.group(1).decode()
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mikro serve did not start:\n{log.read_text()[-3000:]}")
            else:
                time.sleep(0.1)
        yield MikroServer(url=url, token=token, data_dir=data_dir, bucket=bucket, pid=proc.pid)
    finally:
        _stop(proc)
