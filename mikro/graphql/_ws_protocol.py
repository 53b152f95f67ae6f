"""The graphql-transport-ws protocol: message types, close codes, and the errors they stand for.

Protocol text: https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md (the current protocol,
not Apollo's legacy ``graphql-ws``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Any

from mikro._exceptions import (
    AuthenticationError,
    ConnectError,
    MikroError,
    ProtocolError,
    TimeoutError,
)

__all__ = [
    "SUBPROTOCOL",
    "CloseCode",
    "MessageType",
    "complete",
    "connection_init",
    "error_for_close",
    "is_fatal_close",
    "ping",
    "pong",
    "subscribe",
]

SUBPROTOCOL = "graphql-transport-ws"


class MessageType(StrEnum):
    CONNECTION_INIT = "connection_init"
    CONNECTION_ACK = "connection_ack"
    PING = "ping"
    PONG = "pong"
    SUBSCRIBE = "subscribe"
    NEXT = "next"
    ERROR = "error"
    COMPLETE = "complete"


class CloseCode(IntEnum):
    """The close codes the protocol defines (the 1xxx ones are plain websocket codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    WS_PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    CONNECTION_INIT_TIMEOUT = 4408
    SUBSCRIBER_ALREADY_EXISTS = 4409
    TOO_MANY_INIT_REQUESTS = 4429
    SERVER_ERROR = 4500


# Codes after which connecting again cannot help: the server refused us, or one side broke the
# protocol. 4408 is among them: the client sends connection_init at once, so a server that did not get
# it in time sits behind a path too broken to retry blindly. 4500 (a server fault) is worth retrying.
_FATAL = frozenset(
    {
        CloseCode.WS_PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_DATA,
        CloseCode.INVALID_PAYLOAD,
        CloseCode.POLICY_VIOLATION,
        CloseCode.MESSAGE_TOO_BIG,
    }
)


def is_fatal_close(code: int) -> bool:
    """Whether a server's close ``code`` means reconnecting would fail the same way.

    Every 4000-4999 code (the protocol's and application ones) is fatal, except 4500.
    """
    return code in _FATAL or (4000 <= code <= 4999 and code != CloseCode.SERVER_ERROR)


def error_for_close(code: int, reason: str = "") -> MikroError:
    """The typed error for a websocket the server closed with ``code``."""
    text = f"the server closed the websocket with code {code}" + (f" ({reason})" if reason else "")
    if code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN):
        return AuthenticationError(f"{text}: the token was refused", code="UNAUTHENTICATED")
    if code == CloseCode.CONNECTION_INIT_TIMEOUT:
        return TimeoutError(f"{text}: connection_init did not reach the server in time")
    if is_fatal_close(code) or code == CloseCode.SERVER_ERROR:
        return ProtocolError(text, close_code=code)
    # 1000, 1001, 1006, 1011, 1012 ...: the connection went away; connecting again may work.
    return ConnectError(text)


def connection_init(token: str | None) -> dict[str, Any]:
    return {"type": MessageType.CONNECTION_INIT.value, "payload": {"token": token} if token else {}}


def subscribe(op_id: str, document: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": op_id,
        "type": MessageType.SUBSCRIBE.value,
        "payload": {"query": document, "variables": dict(variables)},
    }


def complete(op_id: str) -> dict[str, Any]:
    return {"id": op_id, "type": MessageType.COMPLETE.value}


def ping() -> dict[str, Any]:
    return {"type": MessageType.PING.value}


def pong() -> dict[str, Any]:
    return {"type": MessageType.PONG.value}
