"""Input objects converted by a plan made once per input type.

strawberry's ``convert_argument`` works out again, for every field of every input object it converts,
how that field converts: it camel-cases the field's name, resolves its annotation and asks whether it
is a leaf. For the 100 inputs of a ``createRepresentations`` batch that was a twelfth of the server's
CPU. A plan does the same conversion with those answers found once; a type it was not made for (a
``Maybe``, a ``GlobalID``, a type that builds its own value) goes to ``convert_argument`` itself.
Installed as the input type's ``from_input`` hook, which strawberry calls instead of converting it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.unset import UNSET

__all__ = ["convert_by_plan"]

#: Converts one value: (value, the conversion's context, the value's path in the arguments).
_Converter = Callable[[Any, InputContext, tuple[str | int, ...]], Any]

# Keyed by the type and the schema's scalar registry and config (a leaf in one schema may not be one in
# another); values hold the registry and config, so that the ids in the keys stay theirs.
_PLANS: dict[tuple[Any, int, int], tuple[Any, Any, _Converter]] = {}
_MAX_PLANS = 1024


def convert_by_plan(type_: type, value: Mapping[str, Any], context: InputContext) -> Any:
    """A ``from_input`` hook: ``value`` (coerced by graphql-core) as an instance of the input ``type_``,
    exactly as ``convert_argument`` makes it."""
    return _object_plan(type_, context)(value, context, context.path)


def _object_plan(type_: type, context: InputContext) -> _Converter:
    key = (type_, id(context.scalar_registry), id(context.config))
    entry = _PLANS.get(key)
    if entry is None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        entry = _PLANS[key] = (context.scalar_registry, context.config, _make_object_plan(type_, context))
    return entry[2]


def _is_leaf(type_: Any, context: InputContext) -> bool:
    if type_ is GlobalID:
        return False
    return (
        is_scalar(type_, context.scalar_registry)
        or isinstance(type_, StrawberryEnumDefinition)
        or has_enum_definition(type_)
    )


def _make_object_plan(type_: type, context: InputContext) -> _Converter:
    definition = type_.__strawberry_definition__  # type: ignore[attr-defined]
    # As convert_argument: fields without a default are None unless given (graphql-core has checked
    # that the required ones are).
    base = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    }
    fields: list[tuple[str, str, _Converter | None]] = []
    for field in definition.fields:
        name = context.config.name_converter.from_field(field)
        field_type = field.resolve_type(type_definition=definition)
        fields.append((name, field.python_name, _plan(field_type, context)))

    def convert(value: Mapping[str, Any], context: InputContext, path: tuple[str | int, ...]) -> Any:
        kwargs = dict(base)
        for name, python_name, converter in fields:
            if name in value:
                item = value[name]
                kwargs[python_name] = item if converter is None else converter(item, context, (*path, name))
        return type_(**kwargs)

    return convert


def _plan(type_: Any, context: InputContext) -> _Converter | None:
    """How a value of ``type_`` converts; None: it is kept as it is."""
    if isinstance(type_, StrawberryOptional) and not isinstance(type_, StrawberryMaybe):
        inner = _plan(type_.of_type, context)
        if inner is None:
            return None
        return lambda value, context, path: (
            value if value is None or value is UNSET else inner(value, context, path)
        )
    if isinstance(type_, StrawberryList):
        item = _plan(type_.of_type, context)

        def convert_list(value: Any, context: InputContext, path: tuple[str | int, ...]) -> Any:
            if value is None or value is UNSET:
                return value
            if item is None:
                # A copy: graphql-core hands every request that omits the value the same default list.
                return list(value)
            return [None if x is None else item(x, context, (*path, i)) for i, x in enumerate(value)]

        return convert_list
    if _is_leaf(type_, context):
        return None
    if (
        has_object_definition(type_)
        and type_.__strawberry_definition__.is_input
        and type_.__strawberry_definition__.from_input in (None, convert_by_plan)
    ):
        return lambda value, context, path: (
            value if value is None or value is UNSET else _object_plan(type_, context)(value, context, path)
        )

    def fallback(value: Any, context: InputContext, path: tuple[str | int, ...]) -> Any:
        return convert_argument(
            value, type_, context.scalar_registry, context.config, context.info, path=path
        )

    return fallback
