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

Fields whose value is an object or a list of objects go the same way when the value is at hand: an
attribute of their parent (a basic field), or a relation that declares, in its strawberry field's
metadata under `AT_ONCE`, how to read it from what the request has already loaded (a list's relations
are loaded for all its objects first). Strawberry's resolver wrapper (an ``Info``, its extension
chain) and graphql-core's ``complete_value`` walk then cost more than the rest of the field: a list
of 100 images with their relations has some 1,500 of them. The plan reads the value, checks that it
is exactly what the field's type expects (the type's class, a list of them, no null where none may
be), and completes each object's selection with `execute_fields`; errors inside are handled as
graphql-core handles them (`handle_field_error` at the field, and at each list item). A value that
is not at hand (NOT_LOADED), or not plain, goes the ordinary way, before anything was completed.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from graphql import (
    DirectiveNode,
    GraphQLBoolean,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLString,
    OperationDefinitionNode,
    Undefined,
    Visitor,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    visit,
)
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList, GroupedFieldSet
from graphql.language.visitor import BREAK
from graphql.pyutils import AwaitableOrValue, Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

__all__ = ["AT_ONCE", "NOT_LOADED", "CachingExecutionContext"]

#: Key in a strawberry field's metadata of ``read(source, root_value, context_value)``: the field's
#: value from what the request has at hand without awaiting anything, or NOT_LOADED. Its resolver must
#: answer the same (the ordinary path runs it whenever the plan does not answer).
AT_ONCE: Final = "mikro.at_once"


class _NotLoaded:
    def __repr__(self) -> str:
        return "NOT_LOADED"


NOT_LOADED: Final = _NotLoaded()

#: Entries kept before the caches start afresh (a few hundred documents' selection sets).
_MAX_ENTRIES = 4096

# Values hold the keyed objects themselves, so that the ids in the keys cannot be reused while cached.
_collected: dict[tuple[GraphQLObjectType, tuple[int, ...]], tuple[FieldDetailsList, CollectedFields]] = {}
_static: dict[int, tuple[OperationDefinitionNode, bool]] = {}
_FieldPlans = list[tuple[str, FieldDetailsList, "_Plan | _ObjectPlan | None"]]
_plans: dict[int, tuple[GroupedFieldSet, GraphQLObjectType, _FieldPlans]] = {}

#: Types of values that are neither awaitable nor errors: no need to ask.
_PLAIN_TYPES = frozenset({str, int, float, bool, dt.datetime, dt.date})


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

#: The standard scalars, the type of the values they answer as they are, and which of those they do
#: (an Int within 32 bits, a finite Float).
_AS_IS: dict[GraphQLLeafType, tuple[type, Callable[[Any], bool]]] = {
    GraphQLString: (str, lambda value: type(value) is str),
    GraphQLID: (str, lambda value: type(value) is str),
    GraphQLBoolean: (bool, lambda value: type(value) is bool),
    GraphQLInt: (int, lambda value: type(value) is int and _INT_MIN <= value <= _INT_MAX),
    GraphQLFloat: (float, lambda value: type(value) is float and math.isfinite(value)),
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to answer one basic leaf field: read it, coerce it (each item, for a list)."""

    resolve: Callable[[Any], Any]
    leaf: GraphQLLeafType
    non_null: bool
    is_list: bool
    item_non_null: bool
    #: Whether a value (or item) is answered as it is (see `_AS_IS`).
    as_is: Callable[[Any], bool] | None = None
    #: The type of the values answered as they are without a look at the plan (not a list; str, bool).
    plain: type | None = None


@dataclass(frozen=True, slots=True)
class _ObjectPlan:
    """How to answer a field of an object type (or a list of them): read the value, then answer each
    object's selection by its own plans, ``subplans``."""

    read: Callable[[Any, Any, Any], Any]
    return_type: GraphQLOutputType
    object_type: GraphQLObjectType
    cls: type
    subplans: _FieldPlans
    non_null: bool
    is_list: bool
    item_type: GraphQLOutputType
    item_non_null: bool


class _Fallback(Exception):
    """The value needs graphql-core's own completion (an error, a null where none may be ...)."""


def _basic_reader(definition: Any, resolve: Callable[..., Any]) -> Callable[[Any], Any] | None:
    """How to read a basic field's value from its parent (None if it is not a basic field)."""
    if not getattr(definition, "is_basic_field", False):
        return None
    if getattr(definition, "default_resolver", None) is getattr:
        # What strawberry's resolver does for a basic field, without its two calls around getattr.
        return operator.attrgetter(definition.python_name)
    return lambda source: resolve(source, None)


def _object_class(object_type: GraphQLObjectType) -> type | None:
    """The class of the values of a strawberry object type, if any may be completed without asking."""
    if object_type.is_type_of is not None:
        return None
    definition = (object_type.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    origin = getattr(definition, "origin", None)
    return origin if isinstance(origin, type) else None


def _read_basic(getter: Callable[[Any], Any]) -> Callable[[Any, Any, Any], Any]:
    return lambda source, _root, _context: getter(source)


def _coerce(plan: _Plan, value: Any, is_awaitable: Callable[[Any], bool]) -> Any:
    if plan.as_is is not None and plan.as_is(value):
        return value
    leaf = plan.leaf
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
        return _coerce(plan, value, is_awaitable)
    if type(value) is not list:
        raise _Fallback
    if plan.as_is is not None and all(map(plan.as_is, value)):
        return list(value)
    out: list[Any] = []
    for item in value:
        if item is None:
            if plan.item_non_null:
                raise _Fallback
            out.append(None)
        else:
            out.append(_coerce(plan, item, is_awaitable))
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

    def _plan_for(
        self, parent_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> _Plan | _ObjectPlan | None:
        node = field_details_list[0].node
        field_def = parent_type.fields.get(node.name.value)
        if field_def is None or field_def.args or node.arguments or field_def.resolve is None:
            return None
        definition = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is None:
            return None
        basic = _basic_reader(definition, field_def.resolve)
        kind: Any = field_def.type
        non_null = is_non_null_type(kind)
        kind = kind.of_type if non_null else kind
        is_list = is_list_type(kind)
        item_type = kind.of_type if is_list else kind
        item_non_null = is_list and is_non_null_type(item_type)
        kind = item_type.of_type if item_non_null else item_type
        if is_leaf_type(kind):
            if basic is None:
                return None
            kind_as_is, as_is = _AS_IS.get(kind, (None, None))
            plain = kind_as_is if not is_list and kind_as_is in (str, bool) else None
            return _Plan(basic, kind, non_null, is_list, item_non_null, as_is, plain)
        if not is_object_type(kind) or (cls := _object_class(kind)) is None:
            return None
        if basic is not None:
            read = _read_basic(basic)
        elif not definition.extensions and AT_ONCE in (definition.metadata or {}):
            read = definition.metadata[AT_ONCE]
        else:
            return None
        subplans = self._plans(kind, self.collect_subfields(kind, field_details_list).grouped_field_set)
        if subplans is None:
            return None
        return _ObjectPlan(
            read, field_def.type, kind, cls, subplans, non_null, is_list, item_type, item_non_null
        )

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
        plans = [(name, details, self._plan_for(parent_type, details)) for name, details in fields.items()]
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
        # The root's fields are collected afresh by every request (not through collect_subfields):
        # nothing to plan there, they have resolvers.
        plans = None if path is None else self._plans(parent_type, grouped_field_set)
        if plans is None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return self._execute_plans(parent_type, source_value, path, plans, position_context)

    def _execute_plans(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        plans: _FieldPlans,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        # graphql-core's own loop (Executor.execute_fields), with planned fields answered inline.
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for name, details, plan in plans:
                if type(plan) is _Plan:
                    try:
                        value = plan.resolve(source_value)
                        if type(value) is plan.plain:
                            results[name] = value
                        else:
                            results[name] = _complete(plan, value, is_awaitable)
                        continue
                    except Exception:
                        pass  # the ordinary path below answers it, error and path included
                elif (
                    type(plan) is _ObjectPlan
                    and (value := self._at_hand(plan, source_value)) is not NOT_LOADED
                ):
                    field_path = Path(path, name, parent_type.name)
                    result = self._complete_field(plan, details, field_path, value)
                    results[name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(name)
                    continue
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

    # --- objects answered by plans (see the module's docstring) ------------------------------------------

    def _at_hand(self, plan: _ObjectPlan, source: Any) -> Any:
        """The field's value if the plan may complete it, else NOT_LOADED (nothing done yet)."""
        try:
            value = plan.read(source, self.root_value, self.context_value)
        except Exception:
            return NOT_LOADED  # the resolver raises it again, on the ordinary path
        if value is None:
            return NOT_LOADED if plan.non_null else None
        cls = plan.cls
        if not plan.is_list:
            return value if type(value) is cls else NOT_LOADED
        if type(value) is not list:
            return NOT_LOADED
        for item in value:
            if type(item) is not cls and (item is not None or plan.item_non_null):
                return NOT_LOADED
        return value

    def _complete_field(self, plan: _ObjectPlan, details: FieldDetailsList, path: Path, value: Any) -> Any:
        """The completed value, as graphql-core's ``execute_field`` completes it (errors included)."""
        try:
            completed = self._complete_objects(plan, details, path, value)
        except Exception as raw_error:
            self.handle_field_error(raw_error, plan.return_type, details, path)
            return None
        if self.is_awaitable(completed):
            return self._settled(completed, plan.return_type, details, path)
        return completed

    def _complete_objects(self, plan: _ObjectPlan, details: FieldDetailsList, path: Path, value: Any) -> Any:
        if value is None:
            return None
        if not plan.is_list:
            return self._execute_plans(plan.object_type, value, path, plan.subplans, None)
        is_awaitable = self.is_awaitable
        completed: list[Any] = []
        pending: list[int] = []
        try:
            for index, item in enumerate(value):
                if item is None:
                    completed.append(None)
                    continue
                item_path = path.add_key(index, None)
                try:
                    result = self._execute_plans(plan.object_type, item, item_path, plan.subplans, None)
                except Exception as raw_error:
                    self.handle_field_error(raw_error, plan.item_type, details, item_path)
                    result = None
                if is_awaitable(result):
                    result = self._settled(result, plan.item_type, details, item_path)
                    pending.append(index)
                completed.append(result)
        except Exception:
            if pending:
                self.settle_in_background([completed[index] for index in pending])
            raise
        if not pending:
            return completed

        async def gathered() -> list[Any]:
            awaited = await gather_with_cancel(*(completed[index] for index in pending))
            for index, result in zip(pending, awaited, strict=True):
                completed[index] = result
            return completed

        return gathered()

    async def _settled(
        self, completed: Awaitable[Any], return_type: GraphQLOutputType, details: FieldDetailsList, path: Path
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, details, path)
            return None
