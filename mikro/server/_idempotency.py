"""``Idempotency-Key``: a mutation sent twice with one key runs once; the repeat gets the stored answer."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import anyio
from graphql import OperationType, parse
from graphql.error import GraphQLError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mikro.server._auth import AuthUser
from mikro.server._models import IdempotencyRecord
from mikro.server._services import Services

__all__ = ["graphql_error_response", "run_idempotent"]

MAX_KEY_LENGTH = 255


async def graphql_error_response(send: Send, status: int, code: str, message: str) -> None:
    """An HTTP error whose body is still GraphQL-shaped, so clients parse one format."""
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise anyio.EndOfStream
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_mutation(body: bytes) -> bool:
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return False
        document = parse(payload["query"])
    except (ValueError, GraphQLError):
        return False
    name = payload.get("operationName")
    for definition in document.definitions:
        operation = getattr(definition, "operation", None)
        if operation is None:
            continue
        if name is None or getattr(getattr(definition, "name", None), "value", None) == name:
            return bool(operation == OperationType.MUTATION)
    return False


def _succeeded(status: int, body: bytes) -> bool:
    """Worth remembering: an answer the same request would get again (not a crash we might not repeat)."""
    if status != 200:
        return False
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return not any((e.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR" for e in errors)


async def run_idempotent(
    services: Services, user: AuthUser, key: str, app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        await graphql_error_response(
            send, 400, "BAD_USER_INPUT", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} chars"
        )
        return
    try:
        body = await _read_body(receive)
    except anyio.EndOfStream:
        return
    sent = False

    async def replay_receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    if not _is_mutation(body):
        await app(scope, replay_receive, send)
        return

    request_hash = hashlib.sha256(body).hexdigest()
    try:
        async with services.db.write() as session:
            session.add(IdempotencyRecord(user_id=user.id, key=key, request_hash=request_hash))
    except IntegrityError:
        await _answer_repeat(services, user, key, request_hash, send)
        return

    status = 500
    parts: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
        await send(message)

    record = (IdempotencyRecord.user_id == user.id, IdempotencyRecord.key == key)
    try:
        await app(scope, replay_receive, capture)
    except BaseException:
        with anyio.CancelScope(shield=True):
            async with services.db.write() as session:
                await session.execute(delete(IdempotencyRecord).where(*record))
        raise
    response = b"".join(parts)
    with anyio.CancelScope(shield=True):
        async with services.db.write() as session:
            if _succeeded(status, response):
                await session.execute(
                    update(IdempotencyRecord)
                    .where(*record)
                    .values(status_code=status, response=response.decode("utf-8", "replace"))
                )
            else:
                # Let a retry run the mutation again: nothing of it was committed.
                await session.execute(delete(IdempotencyRecord).where(*record))


async def _answer_repeat(services: Services, user: AuthUser, key: str, request_hash: str, send: Send) -> None:
    async with services.db.read() as session:
        rec: Any = await session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user.id, IdempotencyRecord.key == key
            )
        )
    if rec is None:  # expired or released between our insert attempt and this read
        await graphql_error_response(
            send, 409, "CONFLICT", "request with this Idempotency-Key is in progress"
        )
        return
    if rec.request_hash != request_hash:
        await graphql_error_response(
            send, 422, "CONFLICT", "this Idempotency-Key was already used for a different request"
        )
        return
    if rec.response is None:
        await graphql_error_response(
            send, 409, "CONFLICT", "request with this Idempotency-Key is in progress"
        )
        return
    body = rec.response.encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    await send({"type": "http.response.start", "status": rec.status_code or 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
