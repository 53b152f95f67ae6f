"""An HTTP request's body, read once by the gate: bounded in size, decoded off the loop when large, and
watched for the client going away while the request runs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import orjson
from anyio import CancelScope
from starlette.types import Message, Receive

from mikro.server._limits import limit_message
from mikro.server._work_queues import run_heavy

__all__ = [
    "BadBody",
    "Disconnected",
    "InputBounds",
    "decode_json",
    "predecoded_body",
    "read_body",
    "replay_then_watch",
    "reset_predecoded",
    "set_predecoded",
    "take_predecoded",
]

# Bodies this large (bytes) are JSON-decoded in a worker thread; a thread hop costs more below it.
_INLINE_BYTES = 64 * 1024

# The decoded body of the request being served, so the GraphQL view does not decode it again.
_PREDECODED: ContextVar[tuple[bytes, object] | None] = ContextVar("mikro_predecoded_body", default=None)


class BadBody(Exception):
    """A body the server refuses before GraphQL: ``status`` and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Disconnected(Exception):
    """The client went away before its request was read."""


async def read_body(receive: Receive, limit: int, content_length: str | None = None) -> bytes:
    """The whole body, refused (``BadBody`` 413) as soon as it is known to exceed ``limit`` bytes: at
    once from its ``Content-Length``, else once that much has arrived."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BadBody(413, _too_large(limit))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadBody(413, _too_large(limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(frozen=True)
class InputBounds:
    """How many values, and how deeply nested, a request's variables may be."""

    max_values: int
    max_depth: int


def _too_large(limit: int) -> str:
    return limit_message("max_request_bytes", f"the request body exceeds {limit} bytes")


def _decode(body: bytes, bounds: InputBounds) -> object:
    if len(body) >= _INLINE_BYTES and _more_elements_than(body, bounds.max_values):
        # Refused from a byte scan (C speed), before decoding and walking values one by one.
        message = f"variables hold more than {bounds.max_values} values"
        raise BadBody(400, limit_message("max_input_values", message))
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses what the stdlib decodes (NaN, UTF-16 bodies, lone surrogates, deep nesting):
        # the stdlib answers those, as it did before, errors included.
        payload = _stdlib_loads(body)
    if isinstance(payload, dict) and _check_variables(payload.get("variables"), bounds):
        # orjson turns integers beyond 64 bits into floats (losing digits); the stdlib keeps them.
        payload = _stdlib_loads(body)
        assert isinstance(payload, dict)
        _check_variables(payload.get("variables"), bounds)
    return payload


def _stdlib_loads(body: bytes) -> object:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise BadBody(400, "the request body is not UTF-8") from None
    except RecursionError:
        raise BadBody(
            400, limit_message("max_input_depth", "the request body is nested too deeply")
        ) from None
    except ValueError:
        raise BadBody(400, "the request body is not valid JSON") from None


# A JSON string (escapes included), unrolled so that long strings cost one C loop each.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _more_elements_than(body: bytes, bound: int) -> bool:
    """Whether the body's JSON holds more than ``bound`` values (or empty arrays and objects) beyond its
    few top-level fields, counted without decoding: every comma outside a string separates two
    elements (a lower bound on the work ``_check_variables`` would do). Strings are stripped only when
    even the commas inside them would not stay within ``bound``: a regex pass over megabytes of base64
    thumbnails cost more than decoding them."""
    if body.count(b",") - _TOP_LEVEL_FIELDS <= bound:
        return False
    return _JSON_STRING.sub(b"", body).count(b",") - _TOP_LEVEL_FIELDS > bound


# ``query``, ``variables``, ``operationName`` and ``extensions``: commas that separate no variables.
_TOP_LEVEL_FIELDS = 3


def _check_variables(variables: object, bounds: InputBounds) -> bool:
    """Count and measure the variables before GraphQL coerces them (which costs per value, on the loop,
    and recurses: a value nested thousands deep would end in a RecursionError). True if they hold a
    float beyond the 64-bit integers (it may have been such an integer: see ``_decode``)."""
    beyond = False
    values, stack = 0, [(variables, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > bounds.max_depth:
            raise BadBody(
                400, limit_message("max_input_depth", f"variables nest deeper than {bounds.max_depth}")
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        else:
            if isinstance(value, str) and not value.isascii() and not _is_unicode(value):
                raise BadBody(400, "the variables hold a string that is not valid Unicode (a lone surrogate)")
            if type(value) is float and not _INT64_MIN <= value < _UINT64_END:
                beyond = True
            values += 1
            if values > bounds.max_values:
                message = f"variables hold more than {bounds.max_values} values"
                raise BadBody(400, limit_message("max_input_values", message))
    return beyond


# The integers orjson decodes as integers: [-2**63, 2**64).
_INT64_MIN = -(2**63)
_UINT64_END = 2**64


def _is_unicode(text: str) -> bool:
    # JSON's \ud800 escapes decode to lone surrogates, which no database (nor UTF-8) can hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def decode_json(body: bytes, bounds: InputBounds) -> object:
    """The body's JSON, its variables within ``bounds`` (else ``BadBody``; also when the body is not
    JSON or not UTF-8)."""
    if len(body) < _INLINE_BYTES:
        return _decode(body, bounds)
    return await run_heavy(_decode, body, bounds)


def set_predecoded(body: bytes, payload: object) -> Token[tuple[bytes, object] | None]:
    """Remember ``body``'s decoded JSON for the rest of this request (reset with the token)."""
    return _PREDECODED.set((body, payload))


def reset_predecoded(token: Token[tuple[bytes, object] | None]) -> None:
    _PREDECODED.reset(token)


def predecoded_body() -> bytes | None:
    """The body the gate decoded for the request being served, if it did: the very bytes object, so
    that ``take_predecoded`` knows it by identity. Starlette's ``Request.body()`` joins the replayed
    body with an empty last chunk, a copy of megabytes for a batch of thumbnails, which
    ``take_predecoded`` then compared byte for byte."""
    held = _PREDECODED.get()
    return None if held is None else held[0]


def take_predecoded(data: str | bytes) -> tuple[bool, object]:
    """The decoded JSON of ``data`` if the gate already decoded exactly this body."""
    held = _PREDECODED.get()
    if held is not None and (held[0] is data or held[0] == data):
        return True, held[1]
    return False, None


def replay_then_watch(
    body: bytes, receive: Receive, scope: CancelScope
) -> tuple[Receive, Callable[[], Coroutine[Any, Any, None]]]:
    """A ``receive`` that hands the app the body already read and then waits, and the watcher to run
    beside the app: it cancels ``scope`` when the client disconnects, so its request stops."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return

    return replay, watch
