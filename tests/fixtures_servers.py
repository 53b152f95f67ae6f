"""Fixtures that start real parts on loopback: moto's S3 (+STS) server and the mikro reference server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


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


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 + STS server on a free loopback port with one bucket."""
    import boto3
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
        boto3.client(
            "s3",
            endpoint_url=info.endpoint_url,
            aws_access_key_id=info.access_key,
            aws_secret_access_key=info.secret_key,
            region_name=info.region,
        ).create_bucket(Bucket=info.bucket)
        yield info
    finally:
        server.stop()
