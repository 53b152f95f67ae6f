"""mikro's HTTP clients share one TLS context per process, and it still verifies what it connects to."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import mikro
from mikro.graphql import tls_context

pytestmark = pytest.mark.usefixtures("no_ambient_config")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[int]:
    """A TLS listener with a certificate no authority signed (it answers nothing: no handshake succeeds)."""
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(*_self_signed(tmp_path))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            with contextlib.suppress(OSError), server_side.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.mark.anyio
async def test_an_https_server_with_an_untrusted_certificate_is_refused(tls_port: int) -> None:
    async with mikro.connect(f"https://localhost:{tls_port}", token="t", retries=0, timeout=10) as m:
        with pytest.raises(mikro.ConnectError) as caught:
            await m.me()
    causes: list[BaseException] = []
    exc: BaseException | None = caught.value
    while exc is not None and len(causes) < 10:
        causes.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in causes), causes


def test_one_verifying_context_per_process() -> None:
    https = tls_context("https://mikro.example.org")
    assert https is tls_context("https://other.example.org") is tls_context(None)
    assert (https.verify_mode, https.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert https.cert_store_stats()["x509_ca"] > 0
    # An http:// session loads no authorities, and would refuse any TLS peer rather than trust it.
    plain = tls_context("http://localhost:8000")
    assert plain is tls_context("http://127.0.0.1:9") and plain is not https
    assert (plain.verify_mode, plain.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert plain.cert_store_stats()["x509_ca"] == 0
