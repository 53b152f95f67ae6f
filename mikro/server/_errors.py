"""GraphQL errors with a machine-readable ``extensions.code``, and the extension that guarantees one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

__all__ = [
    "ApiError",
    "BadUserInput",
    "Conflict",
    "ErrorCodes",
    "Forbidden",
    "NotFound",
    "Unauthenticated",
    "about_input",
    "log_unexpected",
    "with_code",
]

logger = logging.getLogger("mikro.server")


class ApiError(Exception):
    """An error the client is meant to see; ``code`` lands in ``extensions.code``."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # graphql-core copies `extensions` of the original error onto the GraphQL error.
        self.extensions: dict[str, Any] = {"code": self.code}


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"


class Forbidden(ApiError):
    code = "FORBIDDEN"


class NotFound(ApiError):
    code = "NOT_FOUND"


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"


class Conflict(ApiError):
    code = "CONFLICT"


@contextmanager
def about_input(label: str) -> Iterator[None]:
    """Prefix an error with the input it is about (``inputs[i]: `` in a batch; empty: unchanged)."""
    try:
        yield
    except ApiError as e:
        if not label:
            raise
        raise type(e)(f"{label}{e}") from None


def _is_input_error(error: GraphQLError) -> bool:
    """Parse, validation and variable-coercion errors (wrong enum value, missing argument ...): they
    arise outside any resolver, so they have no path, or wrap another GraphQLError."""
    original = error.original_error
    return original is None or error.path is None or isinstance(original, GraphQLError)


def with_code(error: GraphQLError) -> GraphQLError:
    """The error as a client sees it: with ``extensions.code``, an unexpected one's text hidden."""
    if error.extensions and "code" in error.extensions:
        return error
    original = error.original_error
    if isinstance(original, ApiError):
        code, message = original.code, error.message
    elif _is_input_error(error):
        code, message = "BAD_USER_INPUT", error.message
    else:
        code, message = "INTERNAL_SERVER_ERROR", "Internal server error"
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code},
    )


def log_unexpected(errors: list[GraphQLError]) -> None:
    """Log what the client will only see as INTERNAL_SERVER_ERROR; expected errors are not news."""
    for error in errors:
        original = error.original_error
        if not isinstance(original, ApiError) and not _is_input_error(error):
            logger.error("unexpected error at %s: %s", error.path, error.message, exc_info=original)


class ErrorCodes(SchemaExtension):
    """Give every error a code and hide the text of unexpected exceptions from clients."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [with_code(e) for e in errors]
        pre = self.execution_context.pre_execution_errors
        if pre:
            self.execution_context.pre_execution_errors = [with_code(e) for e in pre]
