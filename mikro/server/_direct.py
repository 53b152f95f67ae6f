"""Queries answered without strawberry's HTTP view and schema extensions (issue 17: the server's CPU
per request).

A request whose document the query cache holds parsed, validated and within ``max_query_cost`` has
nothing left for strawberry's layers to do but pass it on: its view builds a Starlette request, a
sub-response and a request-data object, re-reads the body, parses the content type with the
``email`` package; ``Schema.execute`` builds an execution context, its extensions (each a context
manager per phase) and a middleware manager. That was about 0.2 ms of the loop's CPU per request,
a third of a trivial query's whole cost. Here such a query goes straight to graphql-core's
``execute`` with mikro's execution context, and its answer is made as the extensions would make it:
unexpected errors logged (`log_unexpected`), every error given its code (`with_code`), the body
encoded as the view encodes it (`encode_answer`).

What is not plainly such a query takes strawberry's path, which answers it as it always did: a
document seen for the first time (strawberry parses, validates and caches it), one with errors or
over the cost limit (strawberry reports them), a mutation or subscription, a missing or unknown
operation name, a body strawberry would refuse (not a JSON object, odd field types, another content
type). `DirectQueries` takes no request at all if the schema has extensions or directives it does
not know how to stand in for.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

import orjson
import strawberry
from graphql import ExecutionResult, GraphQLError, OperationDefinitionNode, OperationType, execute
from starlette.types import Send
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.http.parse_content_type import parse_content_type

from mikro.server._errors import ErrorCodes, with_code
from mikro.server._limits import QueryCache, QueryLimits, cost_errors
from mikro.server._settings import Settings

__all__ = ["DirectQueries", "DirectQuery", "encode_answer"]

#: The schema extensions whose work `DirectQueries` does itself, or finds done in the query cache
#: (the limiters' validation rules ran when the document was validated and cached).
_STOOD_IN_FOR = (ErrorCodes, QueryDepthLimiter, MaxAliasesLimiter, QueryLimits)

_JSON = b"application/json"


def encode_answer(data: object) -> bytes:
    """A response's JSON. orjson: the stdlib's encoder was a tenth of the CPU of a 100-image list."""
    try:
        return orjson.dumps(data)
    except TypeError:  # an integer beyond 64 bits in a JSON value, which only the stdlib writes
        return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class DirectQuery:
    """A request `DirectQueries` answers: its cached document's operation and the request's values."""

    document: Any
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None


class DirectQueries:
    """Takes the requests it can answer (`take`) and answers them (`answer`); see the module's docstring."""

    def __init__(self, schema: strawberry.Schema, cache: QueryCache, settings: Settings) -> None:
        self.schema = schema
        self.cache = cache
        self.settings = settings
        self.enabled = not schema.directives and all(
            isinstance(extension, _STOOD_IN_FOR) for extension in schema.get_extensions()
        )

    def take(self, content_type: str | None, payload: object) -> DirectQuery | None:
        """The request as a `DirectQuery`, or None: strawberry's path answers it."""
        if not self.enabled or type(payload) is not dict or not _is_json(content_type):
            return None
        query = payload.get("query")
        variables = payload.get("variables")
        name = payload.get("operationName")
        extensions = payload.get("extensions")
        if type(query) is not str or not _dict_or_none(variables) or not _dict_or_none(extensions):
            return None
        if name is not None and type(name) is not str:
            return None
        prepared = self.cache.cached(query)
        if prepared is None or prepared.document is None or prepared.validation_errors != []:
            return None
        operation = _operation(prepared.document.definitions, name)
        if operation is None or operation.operation is not OperationType.QUERY:
            return None
        if cost_errors(self.settings, self.schema._schema, prepared, query, name, variables or {}):
            return None
        return DirectQuery(prepared.document, name, variables, extensions)

    async def answer(self, request: DirectQuery, context: object, send: Send) -> None:
        """Run the query with ``context`` and send its answer, as strawberry's view would."""
        try:
            result: Any = execute(
                self.schema._schema,
                request.document,
                context_value=context,
                variable_values=request.variables,
                operation_name=request.operation_name,
                executor_class=self.schema.execution_context_class,
                is_awaitable=_is_awaitable,
                operation_extensions=request.extensions,
            )
            if not isinstance(result, ExecutionResult):
                result = await result
            data, errors = result.data, result.errors
        except Exception as exc:  # graphql-core raises only for a broken schema: answered as strawberry
            # answers it (its message), with a code as every error the server sends.
            data, errors = (
                None,
                [exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)],
            )
        answer: dict[str, Any] = {"data": data}
        if errors:
            self.schema.process_errors(errors)
            answer["errors"] = [with_code(error).formatted for error in errors]
        body = encode_answer(answer)
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# strawberry's test (what its Schema.execute hands graphql-core), typed as graphql-core expects.
_is_awaitable = cast("Callable[[Any], TypeGuard[Awaitable[Any]]]", optimized_is_awaitable)


def _dict_or_none(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _is_json(content_type: str | None) -> bool:
    """Whether strawberry's view takes the body as JSON (its test, without its cost for the usual
    header)."""
    if content_type is None:
        return False
    if content_type == "application/json":
        return True
    return "application/json" in parse_content_type(content_type)[0]


def _operation(definitions: Any, name: str | None) -> OperationDefinitionNode | None:
    """The operation graphql-core would run (None where strawberry refuses the request)."""
    found = None
    for definition in definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if name is None:
            if found is not None:
                return None  # several operations, none named: strawberry answers 400
            found = definition
        elif definition.name is not None and definition.name.value == name:
            return definition
    return found
