"""``Idempotency-Key``: a mutation sent twice with one key runs once; the repeat gets the stored answer.

The key is claimed in the mutation's own first write transaction (no transaction of its own), and the
answer is stored in one more afterwards. A mutation that fails before it writes anything claims no key,
so sending it again runs it again (with the same outcome, since it changed nothing).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import anyio
import orjson
from sqlalchemy import Executable, Table, delete, select, update
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mikro.server._auth import AuthUser
from mikro.server._data_plane import SECRET_FIELDS, reissue_grant
from mikro.server._models import IdempotencyRecord
from mikro.server._services import IdempotencyClaim, Services, idempotency_claim

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


# What the stored answer holds in place of a secret: {_PLACEHOLDER: [store id, write, field name]}.
_PLACEHOLDER = "mikro.reissue"


def _without_secrets(response: bytes, secrets: list[tuple[int, bool, dict[str, str]]]) -> str:
    """The answer to store: every secret it carries (found by value, so aliases cannot hide one)
    replaced by a placeholder saying which grant to re-issue on a replay."""
    text = response.decode("utf-8", "replace")
    if not secrets:
        return text
    found = {
        value: [store, write, name] for store, write, values in secrets for value, name in values.items()
    }

    def scrub(value: Any) -> Any:
        if isinstance(value, str) and value in found:
            return {_PLACEHOLDER: found[value]}
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return json.dumps(scrub(json.loads(text)))


async def _with_new_secrets(services: Services, user: AuthUser, stored: str) -> str:
    """A stored answer with fresh credentials where it had secrets (null where none can be issued)."""
    if _PLACEHOLDER not in stored:
        return stored
    issued: dict[tuple[int, bool], Any] = {}

    async def fill(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {_PLACEHOLDER}:
            store, write, name = value[_PLACEHOLDER]
            if (store, write) not in issued:
                issued[store, write] = await reissue_grant(services, user, store, write)
            data = issued[store, write]
            attribute = next(a for a, field in SECRET_FIELDS if field == name)
            return None if data is None else getattr(data, attribute)
        if isinstance(value, dict):
            return {k: await fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [await fill(v) for v in value]
        return value

    return json.dumps(await fill(json.loads(stored)))


def _succeeded(status: int, body: bytes) -> bool:
    """Worth remembering: an answer the same request would get again (not a crash we might not repeat)."""
    if status != 200:
        return False
    if b'"INTERNAL_SERVER_ERROR"' not in body:
        # Decoding a batch's whole answer to find no such error cost more than storing it.
        return True
    try:
        # orjson: the answer to a batch of images is large, and the stdlib's decoder was slow at it.
        errors = orjson.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return not any((e.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR" for e in errors)


async def run_idempotent(
    services: Services,
    user: AuthUser,
    key: str,
    mutation: bool,
    body: bytes,
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Serve a request carrying an ``Idempotency-Key`` (``body`` is what ``receive`` hands the app)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        await graphql_error_response(
            send, 400, "BAD_USER_INPUT", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} chars"
        )
        return
    if not mutation:
        await app(scope, receive, send)
        return

    # The key is claimed inside the mutation's own first write transaction (see `IdempotencyClaim`),
    # so the answer is held back until we know whether this request or an earlier one owns the key.
    claim = IdempotencyClaim(user.id, key, hashlib.sha256(body).hexdigest())
    messages: list[Message] = []

    async def capture(message: Message) -> None:
        messages.append(message)

    # Core statements on the table: the ORM's bulk UPDATE/DELETE would first look for the rows among
    # loaded objects, which costs about as much again as the statement.
    table = cast(Table, IdempotencyRecord.__table__)
    record = (table.c.user_id == user.id, table.c.key == key)
    try:
        with idempotency_claim(claim):
            await app(scope, receive, capture)
    except BaseException:
        if claim.written:
            with anyio.CancelScope(shield=True):
                await services.db.run_write(lambda session: session.execute(delete(table).where(*record)))
        raise
    if claim.conflict:
        await _answer_repeat(services, user, key, claim.request_hash, send)
        return
    if claim.written:
        status = next((int(m["status"]) for m in messages if m["type"] == "http.response.start"), 500)
        response = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if _succeeded(status, response):
            answer = _without_secrets(response, claim.secrets)
            statement: Executable = update(table).where(*record).values(status_code=status, response=answer)
        else:
            # Let a retry run the mutation again.
            statement = delete(table).where(*record)
        with anyio.CancelScope(shield=True):
            await services.db.run_write(lambda session: session.execute(statement))
    # A mutation that committed nothing (it failed before writing) left no claim: a retry simply runs
    # it again, which changes nothing either.
    for message in messages:
        await send(message)


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
    body = (await _with_new_secrets(services, user, rec.response)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    await send({"type": "http.response.start", "status": rec.status_code or 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
