"""The TLS contexts of mikro's HTTP clients: made once per process, shared by every client.

httpx makes a new default context for every client it builds (``ssl.create_default_context`` loading
certifi's bundle: milliseconds of CPU, a session makes two clients and a subscription one per
connection), even for an ``http://`` URL that never uses it.
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["tls_context"]


@functools.cache
def _verifying() -> ssl.SSLContext:
    # httpx's own default (SSL_CERT_FILE / SSL_CERT_DIR, else certifi's bundle), made once. Sharing one
    # context is safe: OpenSSL contexts are thread-safe to connect with, and httpcore's only change to
    # it per connection (ALPN "http/1.1", no HTTP/2 here) is the same for every client.
    return httpx.create_ssl_context()


@functools.cache
def _no_authorities() -> ssl.SSLContext:
    # Verifying (certificate and host name required) but trusting no authority: free to make, and a
    # client of an http:// URL that somehow reached an https:// one fails there, never unverified.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def tls_context(url: str | None) -> ssl.SSLContext:
    """The context for a client of ``url`` (``None``: a client of any URL)."""
    if url is not None and httpx.URL(url).scheme in ("http", "ws"):
        return _no_authorities()
    return _verifying()
