"""GraphQL execution that remembers how each document's selection sets resolve, across requests.

graphql-core collects the fields of every object it completes (expanding fragments, merging
duplicates) and memoizes that only within one request. Clients send the same few documents again and
again, and ``ParserCache`` hands every request the same parsed document, so the collected fields of a
(type, field nodes) pair are the same in every request: for ``representation(id)`` with its fragments,
recollecting them was a fifth of the server's CPU per request. Field collection depends on the
request's variables only through directives (``@skip``/``@include``/``@defer``) and fragment
arguments; documents that have any are collected per request as before.

The same holds for how each collected field resolves. Most fields of a response are strawberry
"basic" fields (an attribute of the object, no resolver) of a scalar or enum type, or a list of them;
graphql-core still builds a ``GraphQLResolveInfo`` for each of them, calls the resolver through
strawberry's wrapper, and walks ``complete_value`` for each: a list of 100 images spent most of its
CPU there (issue 17). For such a field a plan, made once per field of a cached selection, reads the
attribute and coerces it as ``complete_leaf_value`` does. Anything unusual (null for a non-null
type, a value that does not coerce, an awaitable, an error) goes the ordinary way, which then
produces exactly the ordinary answer, error and path included: reading an attribute twice changes
nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DirectiveNode,
    GraphQLLeafType,
    GraphQLObjectType,
    OperationDefinitionNode,
    Undefined,
    Visitor,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    visit,
)
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList, GroupedFieldSet
from graphql.language.visitor import BREAK
from graphql.pyutils import AwaitableOrValue, Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

__all__ = ["CachingExecutionContext"]

#: Entries kept before the caches start afresh (a few hundred documents' selection sets).
_MAX_ENTRIES = 4096

# Values hold the keyed objects themselves, so that the ids in the keys cannot be reused while cached.
_collected: dict[tuple[GraphQLObjectType, tuple[int, ...]], tuple[FieldDetailsList, CollectedFields]] = {}
_static: dict[int, tuple[OperationDefinitionNode, bool]] = {}
_FieldPlans = list[tuple[str, FieldDetailsList, "_Plan | None"]]
_plans: dict[int, tuple[GroupedFieldSet, GraphQLObjectType, _FieldPlans]] = {}

#: Types of values that are neither awaitable nor errors: no need to ask.
_PLAIN_TYPES = frozenset({str, int, float, bool, dt.datetime, dt.date})


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to answer one basic leaf field: read it, coerce it (each item, for a list)."""

    resolve: Callable[..., Any]
    leaf: GraphQLLeafType
    non_null: bool
    is_list: bool
    item_non_null: bool


class _Fallback(Exception):
    """The value needs graphql-core's own completion (an error, a null where none may be ...)."""


def _plan_for(parent_type: GraphQLObjectType, field_details_list: FieldDetailsList) -> _Plan | None:
    node = field_details_list[0].node
    field_def = parent_type.fields.get(node.name.value)
    if field_def is None or field_def.args or node.arguments or field_def.resolve is None:
        return None
    definition = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if definition is None or not getattr(definition, "is_basic_field", False):
        return None
    kind: Any = field_def.type
    non_null = is_non_null_type(kind)
    kind = kind.of_type if non_null else kind
    is_list = is_list_type(kind)
    kind = kind.of_type if is_list else kind
    item_non_null = is_list and is_non_null_type(kind)
    kind = kind.of_type if item_non_null else kind
    if not is_leaf_type(kind):
        return None
    return _Plan(field_def.resolve, kind, non_null, is_list, item_non_null)


def _coerce(leaf: GraphQLLeafType, value: Any, is_awaitable: Callable[[Any], bool]) -> Any:
    plain = type(value) in _PLAIN_TYPES or isinstance(value, enum.Enum)
    if not plain and (value is Undefined or isinstance(value, Exception) or is_awaitable(value)):
        raise _Fallback
    coerced = leaf.coerce_output_value(value)
    if coerced is None or coerced is Undefined:
        raise _Fallback
    return coerced


def _complete(plan: _Plan, value: Any, is_awaitable: Callable[[Any], bool]) -> Any:
    if value is None:
        if plan.non_null:
            raise _Fallback
        return None
    if not plan.is_list:
        return _coerce(plan.leaf, value, is_awaitable)
    if type(value) is not list:
        raise _Fallback
    out: list[Any] = []
    for item in value:
        if item is None:
            if plan.item_non_null:
                raise _Fallback
            out.append(None)
        else:
            out.append(_coerce(plan.leaf, item, is_awaitable))
    return out


class _FindDirective(Visitor):
    found = False

    def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
        self.found = True
        return BREAK


def _has_directives(nodes: list[Any]) -> bool:
    for node in nodes:
        finder = _FindDirective()
        visit(node, finder)
        if finder.found:
            return True
    return False


class CachingExecutionContext(StrawberryGraphQLCoreExecutionContext):
    _static_operation: bool | None = None

    def _is_static(self) -> bool:
        """Whether field collection in this operation ignores the variables (no directives)."""
        if self._static_operation is not None:
            return self._static_operation
        operation = self.operation
        entry = _static.get(id(operation))
        if entry is None or entry[0] is not operation:
            if len(_static) >= _MAX_ENTRIES:
                _static.clear()
            fragments = [details.definition for details in self.fragments.values()]
            static = not any(details.variable_signatures for details in self.fragments.values())
            entry = (operation, static and not _has_directives([operation, *fragments]))
            _static[id(operation)] = entry
        self._static_operation = entry[1]
        return entry[1]

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        if not self._is_static():
            return super().collect_subfields(return_type, field_details_list)
        key = (return_type, tuple(id(details.node) for details in field_details_list))
        cached = _collected.get(key)
        if cached is not None:
            return cached[1]
        collected = super().collect_subfields(return_type, field_details_list)
        if len(_collected) >= _MAX_ENTRIES:
            _collected.clear()
        _collected[key] = (field_details_list, collected)
        return collected

    def _plans(self, parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> _FieldPlans | None:
        """Per response key of a cached selection: its field details and plan (None: no shortcut)."""
        # Only the selections of static operations are cached (and so recur), and only plain
        # resolution may be skipped: a middleware (a schema extension's `resolve`) sees every field.
        if not self._is_static() or (
            self.middleware_manager is not None and self.middleware_manager._middleware_resolvers
        ):
            return None
        entry = _plans.get(id(fields))
        if entry is not None and entry[0] is fields and entry[1] is parent_type:
            return entry[2]
        plans = [(name, details, _plan_for(parent_type, details)) for name, details in fields.items()]
        if len(_plans) >= _MAX_ENTRIES:
            _plans.clear()
        _plans[id(fields)] = (fields, parent_type, plans)
        return plans

    def get_stream_usage(self, field_details_list: FieldDetailsList, path: Path) -> Any:
        # A static operation has no directives, so no @stream: skip looking for one in every list.
        if self._is_static():
            return None
        return super().get_stream_usage(field_details_list, path)

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plans = self._plans(parent_type, grouped_field_set)
        if plans is None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        # graphql-core's own loop (Executor.execute_fields), with planned fields answered inline.
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for name, details, plan in plans:
                if plan is not None:
                    try:
                        results[name] = _complete(plan, plan.resolve(source_value, None), is_awaitable)
                        continue
                    except Exception:
                        pass  # the ordinary path below answers it, error and path included
                field_path = Path(path, name, parent_type.name)
                result = self.execute_field(parent_type, source_value, details, field_path, position_context)
                if result is not Undefined:
                    results[name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited = await gather_with_cancel(*(results[field] for field in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()
