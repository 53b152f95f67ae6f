"""GraphQL over HTTP POST with httpx: one request, retried when that is safe, errors mapped once."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import anyio
import httpx
import orjson
import pydantic

from mikro.graphql._errors import error_from_httpx, result_from_response
from mikro.graphql._retry import RetryPolicy

__all__ = ["AsyncTransport", "new_idempotency_key", "operation_type", "request_headers"]

T = TypeVar("T")

_FIRST_DEFINITION = re.compile(r"^(?:\s|,|#[^\n]*)*(query|mutation|subscription|\{)")


def operation_type(document: str) -> Literal["query", "mutation", "subscription"]:
    """The type of the first operation in ``document`` (a bare ``{ ... }`` selection is a query)."""
    match = _FIRST_DEFINITION.match(document)
    if match is None:
        raise ValueError("the document does not start with an operation (query, mutation or subscription)")
    kind = match.group(1)
    return "query" if kind == "{" else kind  # type: ignore[return-value]


def new_idempotency_key() -> str:
    """A key for one logical mutation call; every retry of that call sends the same key."""
    return str(uuid.uuid4())


def request_headers(token: str | None, idempotency_key: str | None) -> dict[str, str]:
    # Lower case, as httpx spells a client's default headers: merged with those in a plain dict
    # (AsyncTransport._post), each name then appears once.
    headers = {
        "accept": "application/graphql-response+json, application/json",
        "content-type": "application/json",
    }
    if token:
        headers["authorization"] = f"Bearer {token}"
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    return headers


def _payload(document: str, variables: Mapping[str, Any] | None, operation_name: str | None) -> bytes:
    """The request body. orjson, not httpx's ``json=``: the standard encoder escapes each character of
    long strings in turn, and an image's registration carries its thumbnail in base64 (~0.6 ms per
    256x256 image with json, 10 µs with orjson)."""
    payload: dict[str, Any] = {"query": document, "variables": dict(variables or {})}
    if operation_name:
        payload["operationName"] = operation_name
    try:
        return orjson.dumps(payload)
    except TypeError:  # what orjson does not take (integers beyond 64 bits): the standard encoder
        return json.dumps(payload).encode()


def _may_retry(document: str, idempotency_key: str | None) -> bool:
    # A mutation sent twice may act twice, unless the server can recognise the repeat by its key.
    return operation_type(document) == "query" or idempotency_key is not None


class AsyncTransport:
    """Sends GraphQL documents to one endpoint through a caller-owned ``httpx.AsyncClient``.

    Queries are retried on connection errors and 429/502/503/504; mutations only when they carry an
    ``Idempotency-Key`` (the server then executes them once per key and replays the stored answer).

    At most ``max_in_flight`` requests (the client's pool size) are handed to httpx at once; the rest
    wait here. httpcore 1.0's pool re-scans every connection and every queued request, probing each
    idle socket, whenever a request starts or ends: with a queue behind a full pool that was most of
    the client's CPU per request (issue 17).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        token: str | None,
        retry: RetryPolicy,
        timeout: float | None,
        max_in_flight: int | None = None,
        direct: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = client
        # ``direct``: the client's own transport for ``url`` (none when a proxy is in play). A request
        # handed straight to it skips httpx's client layers (cookies, auth and redirect flows, header
        # merging), which do nothing for a GraphQL POST: ~8 % of the client's CPU per small request.
        self._direct = direct
        self._base_headers = dict(client.headers)
        self._extensions = {"timeout": client.timeout.as_dict()}
        self._slots = None if max_in_flight is None else anyio.Semaphore(max_in_flight)
        self.url = url
        # Parsed once: httpx parses a str URL again on every request.
        self._parsed_url = httpx.URL(url)
        self._token = token
        self.retry = retry
        self._timeout = timeout

    async def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """The ``data`` of the answer; raises a :class:`mikro.MikroError` subclass on any failure."""
        return await self._send(document, variables, operation_name, idempotency_key, result_from_response)

    async def execute_validated(
        self,
        document: str,
        variables: Mapping[str, Any] | None,
        shape: pydantic.TypeAdapter[T],
        *,
        operation_name: str | None = None,
        idempotency_key: str | None = None,
        context: Any = None,
    ) -> T:
        """The whole answer validated as ``shape`` straight from its bytes, for answers of many objects.

        One pass over the body in pydantic-core instead of a decoded copy validated again: a third of
        the client's CPU in ``list_representations(100)`` (issue 17). ``shape`` must refuse an answer
        with ``errors``; such an answer, or one not of that shape, takes :meth:`execute`'s path, which
        raises the mapped error, or pydantic's validation error as the decoded answer would have. A
        mutation's ``idempotency_key`` is sent and retried as :meth:`execute` does (the answer is read
        inside each attempt, so a retried mutation's answer is validated the same way).
        """

        def read(response: httpx.Response) -> T:
            if response.status_code == 200:
                try:
                    return shape.validate_json(response.content, context=context)
                except pydantic.ValidationError:
                    pass
            return shape.validate_python({"data": result_from_response(response)}, context=context)

        return await self._send(document, variables, operation_name, idempotency_key, read)

    async def _send(
        self,
        document: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        idempotency_key: str | None,
        read: Callable[[httpx.Response], T],
    ) -> T:
        payload = _payload(document, variables, operation_name)
        headers = request_headers(self._token, idempotency_key)

        async def attempt() -> T:
            try:
                if self._slots is None:
                    response = await self._post(payload, headers)
                else:
                    async with self._slots:
                        response = await self._post(payload, headers)
            except httpx.HTTPError as exc:
                raise error_from_httpx(exc, url=self.url, timeout=self._timeout) from exc
            return read(response)

        return await self.retry.run_async(attempt, retry=_may_retry(document, idempotency_key))

    async def _post(self, payload: bytes, headers: dict[str, str]) -> httpx.Response:
        if self._direct is None:
            return await self._client.post(self._parsed_url, content=payload, headers=headers)
        request = httpx.Request(
            "POST",
            self._parsed_url,
            headers={**self._base_headers, **headers},
            content=payload,
            extensions=self._extensions,
        )
        response = await self._direct.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response
