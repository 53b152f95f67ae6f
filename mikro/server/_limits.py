"""Per-request limits: what one request may cost the shared server before it is refused.

- Body size and JSON decoding are checked by the HTTP gate (``mikro/server/_app.py``) before GraphQL
  sees the request; large bodies are decoded in a worker thread.
- Tokens (graphql-core's parser ``max_tokens``, what strawberry's ``MaxTokensLimiter`` sets), depth
  (strawberry's ``QueryDepthLimiter``) and aliases (``MaxAliasesLimiter``) are refused while
  parsing/validating.
- List fan-out: ``query_cost`` estimates how many objects an operation can resolve (a list field
  multiplies what is below it by its page size, or by ``list_cost_estimate`` for unpaginated nested
  lists) and refuses operations above ``max_query_cost`` before any resolver runs.
- Parsing and validation of large documents run in worker threads, and the parsed/validated documents
  are cached in a cache bounded by (estimated) bytes, not entries.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from mikro.server._settings import Settings
from mikro.server._work_queues import run_heavy

__all__ = [
    "LIMIT_CODE",
    "QueryCache",
    "QueryLimits",
    "cost_errors",
    "limit_error",
    "limit_message",
    "query_cost",
]

LIMIT_CODE = "BAD_USER_INPUT"
# Documents this long (characters) are parsed and validated in a worker thread; below it a thread hop
# costs more than the work (a client's usual documents parse in well under a millisecond).
_INLINE_CHARS = 8192
# A parsed document keeps roughly this many bytes per character of its text (AST nodes, locations,
# tokens), measured with tracemalloc on mikro's own documents and on alias floods.
_BYTES_PER_CHAR = 48
_ENTRY_OVERHEAD = 2048
# The page size of a list query without a pagination limit (OffsetPaginationInput.limit).
_DEFAULT_PAGE = 100


def limit_message(setting: str, message: str) -> str:
    """A refusal's message names the ``Settings`` field (``MIKRO_<NAME>``) that bounds it."""
    return f"{message} (limit: {setting}, MIKRO_{setting.upper()})"


def limit_error(setting: str, message: str) -> GraphQLError:
    return GraphQLError(limit_message(setting, message), extensions={"code": LIMIT_CODE, "limit": setting})


@dataclass
class _Prepared:
    document: DocumentNode | None
    parse_error: GraphQLError | None
    size: int = 0  # estimated bytes held while cached
    validation_errors: list[GraphQLError] | None = None
    # Costs by operation name, of documents whose cost does not depend on variables (no pagination).
    costs: dict[str | None, int] = field(default_factory=dict)


class QueryCache:
    """Parsed (and, once checked, validated) documents by query text, bounded by estimated bytes.

    The one parse of a request: the ``Idempotency-Key`` check (is it a mutation?) and execution share
    it. Parsing stops after ``max_tokens`` tokens (graphql-core's parser option, the one strawberry's
    ``MaxTokensLimiter`` sets), so a flood of aliases costs no more than a short document.
    """

    def __init__(self, max_bytes: int, max_tokens: int) -> None:
        self._cache: LRUCache[str, _Prepared] = LRUCache(maxsize=max_bytes, getsizeof=lambda p: p.size)
        self.max_tokens = max_tokens

    @property
    def bytes(self) -> int:
        return int(self._cache.currsize)

    def cached(self, query: str) -> _Prepared | None:
        """The document of ``query`` if it is cached (not parsing it)."""
        return self._cache.get(query)

    async def prepare(self, query: str) -> _Prepared:
        prepared = self._cache.get(query)
        if prepared is None:
            prepared = await _off_loop_if_large(query, self._parse, query)
            prepared.size = _ENTRY_OVERHEAD + _BYTES_PER_CHAR * len(query)
            if prepared.size <= self._cache.maxsize:  # cachetools raises for a value larger than the cache
                self._cache[query] = prepared
        return prepared

    def _parse(self, query: str) -> _Prepared:
        if len(query) > self.max_tokens and _punctuators_at_least(query) > self.max_tokens:
            message = f"Document contains more than {self.max_tokens} tokens. Parsing aborted."
            return _Prepared(None, limit_error("max_query_tokens", message))
        try:
            return _Prepared(parse(query, max_tokens=self.max_tokens), None)
        except GraphQLError as error:
            if "tokens" in error.message:
                error = limit_error("max_query_tokens", error.message)
            return _Prepared(None, error)
        except RecursionError:
            return _Prepared(None, limit_error("max_query_depth", "the document is nested too deeply"))

    async def operation_type(self, query: str, operation_name: str | None) -> OperationType | None:
        """The type of the operation a request would run (None if it does not parse or name one)."""
        document = (await self.prepare(query)).document
        if document is None:
            return None
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            if operation_name is None or (definition.name and definition.name.value == operation_name):
                return definition.operation
        return None


async def _off_loop_if_large(query: str, func: Any, *args: Any) -> Any:
    if len(query) < _INLINE_CHARS:
        return func(*args)
    return await run_heavy(func, *args)


# GraphQL strings (block strings first) and comments: what may hold punctuation that is not a token.
_NOT_TOKENS = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|#[^\n]*')
_PUNCTUATORS = b"{}()[]:!$=@|"


def _punctuators_at_least(query: str) -> int:
    """A lower bound on the document's tokens, from a scan at C speed: each punctuator outside strings
    and comments is one token (names, numbers and strings are more). graphql-core's parser would stop
    at ``max_tokens`` too, but only after building that many nodes, and its error then locates itself
    in the whole text."""
    text = _NOT_TOKENS.sub("", query) if '"' in query or "#" in query else query
    raw = text.encode("utf-8", "replace")
    return len(raw) - len(raw.translate(None, _PUNCTUATORS))


# What strawberry gets in place of a document that did not parse: it looks at the document (operation
# type) between parsing and validation, and our validation hook then reports the real parse error.
_PLACEHOLDER = parse("{ __typename }")


class QueryLimits(SchemaExtension):
    """Parse and validate through the byte-bounded cache (off the loop when large), then refuse
    operations whose estimated fan-out exceeds ``max_query_cost``. Runs after strawberry's depth and
    alias limiters have added their validation rules."""

    def __init__(self, settings: Settings, cache: QueryCache) -> None:
        super().__init__()
        self.settings = settings
        self.cache = cache
        self._prepared: _Prepared | None = None

    async def on_parse(self) -> AsyncIterator[None]:
        ec = self.execution_context
        prepared = await self.cache.prepare(ec.query or "")
        self._prepared = prepared
        ec.graphql_document = prepared.document or _PLACEHOLDER
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        ec = self.execution_context
        prepared = self._prepared
        assert prepared is not None
        if prepared.parse_error is not None:
            ec.pre_execution_errors = [prepared.parse_error]
        else:
            if prepared.validation_errors is None:
                errors = await _off_loop_if_large(
                    ec.query or "",
                    validate_document,
                    ec.schema._schema,
                    prepared.document,
                    ec.validation_rules,
                )
                prepared.validation_errors = [_naming_the_limit(e) for e in errors]
            errors = list(prepared.validation_errors)
            if not errors:
                schema, name, variables = ec.schema._schema, ec.operation_name, ec.variables or {}
                errors = cost_errors(self.settings, schema, prepared, ec.query or "", name, variables)
            ec.pre_execution_errors = errors
        yield


def cost_errors(
    settings: Settings,
    schema: GraphQLSchema,
    prepared: _Prepared,
    query: str,
    operation_name: str | None,
    variables: Mapping[str, Any],
) -> list[GraphQLError]:
    """The refusal of an operation over ``max_query_cost`` (none if within it)."""
    assert prepared.document is not None
    cost = prepared.costs.get(operation_name)
    if cost is None:
        estimate = settings.list_cost_estimate
        cost = query_cost(schema, prepared.document, operation_name, variables, estimate)
        if "pagination" not in query:  # only page sizes read variables
            prepared.costs[operation_name] = cost
    limit = settings.max_query_cost
    if cost <= limit:
        return []
    message = f"this operation may resolve about {cost} objects, over {limit}"
    return [limit_error("max_query_cost", message)]


# The errors of strawberry's limiters, by a phrase of their message, and the setting behind each.
_LIMITER_ERRORS = {"maximum operation depth": "max_query_depth", "aliases found": "max_query_aliases"}


def _naming_the_limit(error: GraphQLError) -> GraphQLError:
    for phrase, setting in _LIMITER_ERRORS.items():
        if phrase in error.message:
            return limit_error(setting, error.message)
    return error


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any],
    list_estimate: int,
) -> int:
    """How many objects an operation may resolve at most: a list of objects multiplies what is below
    it by its page size (``pagination``'s ``limit``, 100 by default) or, for nested lists without
    pagination, by ``list_estimate``."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    total = 0
    for operation in operations[:1]:
        root = schema.get_root_type(operation.operation)
        if root is not None:
            selections = operation.selection_set
            total += _selection_cost(schema, root, selections, 1, fragments, variables, list_estimate)
    return total


def _selection_cost(
    schema: GraphQLSchema,
    parent: GraphQLNamedType,
    selections: SelectionSetNode,
    multiplier: int,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    list_estimate: int,
) -> int:
    total = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            # Scalars cost nothing of their own: the objects they are read from are what costs.
            if selection.selection_set is None or not isinstance(parent, GraphQLObjectType):
                continue
            field = parent.fields.get(selection.name.value)
            if field is None:
                continue
            child = get_named_type(field.type)
            inner = multiplier
            if isinstance(get_nullable_type(field.type), GraphQLList) and is_composite_type(child):
                inner *= _page_size(field.args, selection, variables, list_estimate)
            total += inner + _selection_cost(
                schema, child, selection.selection_set, inner, fragments, variables, list_estimate
            )
        elif isinstance(selection, InlineFragmentNode):
            target = parent
            if selection.type_condition is not None:
                target = schema.get_type(selection.type_condition.name.value) or parent
            total += _selection_cost(
                schema, target, selection.selection_set, multiplier, fragments, variables, list_estimate
            )
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                target = schema.get_type(fragment.type_condition.name.value) or parent
                total += _selection_cost(
                    schema, target, fragment.selection_set, multiplier, fragments, variables, list_estimate
                )
    return total


def _page_size(args: Mapping[str, Any], node: FieldNode, variables: Mapping[str, Any], estimate: int) -> int:
    if "pagination" not in args:
        return estimate
    for argument in node.arguments or ():
        if argument.name.value == "pagination":
            limit = _literal(argument.value, variables)
            if isinstance(limit, dict):
                limit = limit.get("limit")
            elif isinstance(argument.value, ObjectValueNode):
                field = next((f for f in argument.value.fields if f.name.value == "limit"), None)
                limit = None if field is None else _literal(field.value, variables)
            if isinstance(limit, int) and limit >= 0:
                return max(limit, 1)
    return _DEFAULT_PAGE


def _literal(value: ValueNode, variables: Mapping[str, Any]) -> Any:
    """A variable's value or an int literal (validation has checked the types already)."""
    if isinstance(value, VariableNode):
        return variables.get(value.name.value)
    if isinstance(value, IntValueNode):
        return int(value.value)
    return None
