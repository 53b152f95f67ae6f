"""A blocking GraphQL executor for worker threads (dask tasks, obstore credential refresh).

It shares nothing with the event loop: its own ``httpx.Client`` (thread-safe connection pool), the same
retry policy and error mapping as :class:`~mikro.graphql.AsyncTransport`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from mikro.graphql._errors import error_from_httpx, result_from_response
from mikro.graphql._retry import RetryPolicy
from mikro.graphql._transport import _may_retry, _payload, request_headers

__all__ = ["BlockingTransport"]


class BlockingTransport:
    """Sends GraphQL documents from any thread, blocking that thread; never touches the event loop."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        *,
        token: str | None,
        retry: RetryPolicy,
        timeout: float | None,
    ) -> None:
        self._client = client
        self.url = url
        self._token = token
        self.retry = retry
        self._timeout = timeout

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        payload = _payload(document, variables, operation_name)
        headers = request_headers(self._token, idempotency_key)

        def attempt() -> dict[str, Any]:
            try:
                response = self._client.post(self.url, content=payload, headers=headers)
            except httpx.HTTPError as exc:
                raise error_from_httpx(exc, url=self.url, timeout=self._timeout) from exc
            return result_from_response(response)

        return self.retry.run_blocking(attempt, retry=_may_retry(document, idempotency_key))
