"""The client's documents and models against mikro/schema.graphql, so client/server drift fails here.

- every operation document validates against the schema (graphql-core);
- every field a fragment selects exists on the model of that type (no data silently dropped);
- every model field maps to a schema field of a compatible type, and every schema field of a modelled
  type has a model field; enums have the schema's values;
- the running reference server's schema (introspection) equals the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    TypeInfo,
    Visitor,
    build_client_schema,
    build_schema,
    get_introspection_query,
    parse,
    print_ast,
    print_schema,
    validate,
    visit,
)
from graphql.language import FieldNode
from graphql.utilities import lexicographic_sort_schema
from pydantic import Base64Bytes, SecretStr

import mikro.api
from mikro.api import MikroModel, all_operations

SCHEMA_FILE = Path(mikro.__file__).parent / "schema.graphql"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(SCHEMA_FILE.read_text())


def models() -> dict[str, type[MikroModel]]:
    found = {}
    for name in mikro.api.__all__:
        obj = getattr(mikro.api, name)
        if isinstance(obj, type) and issubclass(obj, MikroModel) and obj is not MikroModel:
            found[obj.__name__] = obj
    return found


def enums() -> dict[str, type[Enum]]:
    return {
        obj.__name__: obj
        for name in mikro.api.__all__
        if isinstance(obj := getattr(mikro.api, name), type) and issubclass(obj, Enum)
    }


@pytest.mark.parametrize("op", all_operations(), ids=lambda op: op.name)
def test_operation_document_is_valid(schema: GraphQLSchema, op: mikro.api.Operation) -> None:
    document = parse(op.document)
    errors = validate(schema, document)
    assert not errors, [e.message for e in errors]
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert len(operations) == 1 and operations[0].name and operations[0].name.value == op.name
    assert operations[0].operation.value == op.kind


def test_every_schema_operation_has_a_client_document(schema: GraphQLSchema) -> None:
    used: set[str] = set()
    for op in all_operations():
        for definition in parse(op.document).definitions:
            if isinstance(definition, OperationDefinitionNode):
                used.update(
                    sel.name.value
                    for sel in definition.selection_set.selections
                    if isinstance(sel, FieldNode)
                )
    query_type, mutation_type = schema.query_type, schema.mutation_type
    assert query_type is not None and mutation_type is not None
    wanted = set(query_type.fields) | set(mutation_type.fields)
    assert wanted - used == set()


def _selected_fields(schema: GraphQLSchema, document: DocumentNode) -> set[tuple[str, str]]:
    """(type name, field name) of every field selected anywhere in the document."""
    type_info = TypeInfo(schema)
    found: set[tuple[str, str]] = set()

    class Collect(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            parent = type_info.get_parent_type()
            if parent is not None:
                found.add((parent.name, node.name.value))

    from graphql.utilities import TypeInfoVisitor

    visit(document, TypeInfoVisitor(type_info, Collect()))
    return found


def test_every_selected_field_lands_in_a_model(schema: GraphQLSchema) -> None:
    by_name = models()
    missing = set()
    for op in all_operations():
        for type_name, field_name in _selected_fields(schema, parse(op.document)):
            if type_name in ("Query", "Mutation"):
                continue
            model = by_name.get(type_name)
            aliases = {f.alias or n for n, f in model.model_fields.items()} if model else set()
            if field_name not in aliases:
                missing.add(f"{type_name}.{field_name}")
    assert not missing


_SCALARS: dict[str, tuple[Any, ...]] = {
    "ID": (str,),
    "String": (str, SecretStr),
    "Int": (int,),
    "Float": (float,),
    "Boolean": (bool,),
    "DateTime": (dt.datetime,),
    "JSON": (Any,),
    "Base64": (Base64Bytes,),
    "BigInt": (int,),
}

#: Scalars too large to come with their object: only one operation selects each, and the model's field
#: is ``None`` ("not loaded") everywhere else, as a relation that was not selected is.
_LOADED_ON_DEMAND = {("Thumbnail", "png")}


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != len(typing.get_args(annotation)):
            assert len(args) == 1, annotation
            return args[0], True
    return annotation, annotation is Any


def _compatible(annotation: Any, gql_type: Any, where: str, on_demand: bool = False) -> list[str]:
    inner, optional = _split_optional(annotation)
    if isinstance(gql_type, GraphQLNonNull):
        gql_type = gql_type.of_type
        named = gql_type
        while isinstance(named, GraphQLList | GraphQLNonNull):
            named = named.of_type
        # A relation the operation did not select is None ("not loaded"); scalars may not be.
        if optional and not isinstance(named, GraphQLObjectType) and annotation is not Any and not on_demand:
            return [f"{where}: schema says non-null {gql_type}, model allows None"]
    elif not optional:
        return [f"{where}: schema allows null, model {annotation} does not"]
    if isinstance(gql_type, GraphQLList):
        if typing.get_origin(inner) is not list:
            return [f"{where}: schema has a list, model has {inner}"]
        (item,) = typing.get_args(inner)
        return _compatible(item, gql_type.of_type, where + "[]")
    if isinstance(gql_type, GraphQLScalarType):
        if inner not in _SCALARS[gql_type.name]:
            return [f"{where}: {gql_type.name} vs {inner}"]
        return []
    if isinstance(gql_type, GraphQLEnumType):
        if not (isinstance(inner, type) and issubclass(inner, Enum) and inner.__name__ == gql_type.name):
            return [f"{where}: enum {gql_type.name} vs {inner}"]
        return []
    if isinstance(gql_type, GraphQLObjectType):
        if not (
            isinstance(inner, type) and issubclass(inner, MikroModel) and inner.__name__ == gql_type.name
        ):
            return [f"{where}: object {gql_type.name} vs {inner}"]
        return []
    return [f"{where}: unexpected schema type {gql_type}"]


def test_models_match_schema_types(schema: GraphQLSchema) -> None:
    problems: list[str] = []
    by_name = models()
    for name, model in by_name.items():
        gql = schema.get_type(name)
        assert isinstance(gql, GraphQLObjectType), f"model {name} has no object type in the schema"
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        for alias, field in fields.items():
            if alias not in gql.fields:
                problems.append(f"{name}.{alias} is not in the schema")
                continue
            on_demand = (name, alias) in _LOADED_ON_DEMAND
            problems += _compatible(field.annotation, gql.fields[alias].type, f"{name}.{alias}", on_demand)
        problems += [f"{name}.{f} has no model field" for f in gql.fields if f not in fields]
    assert not problems


def test_every_schema_object_type_has_a_model(schema: GraphQLSchema) -> None:
    object_types = {
        name
        for name, t in schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and not name.startswith("__")
    } - {"Query", "Mutation", "Subscription"}
    assert object_types == set(models())


def test_enums_match_schema(schema: GraphQLSchema) -> None:
    schema_enums = {
        name: set(t.values)
        for name, t in schema.type_map.items()
        if isinstance(t, GraphQLEnumType) and not name.startswith("__")
    }
    assert {name: {m.value for m in e} for name, e in enums().items()} == schema_enums


def _without_descriptions(sdl: str) -> str:
    class Strip(Visitor):
        def leave(self, node: Any, *_: Any) -> Any:
            if getattr(node, "description", None) is not None:
                return dataclasses.replace(node, description=None)
            return None

    return print_ast(visit(parse(sdl), Strip()))


def test_live_server_schema_equals_the_file(mikro_server: Any) -> None:
    response = httpx.post(
        mikro_server.url,
        json={"query": get_introspection_query(specified_by_url=True)},
        headers={"Authorization": f"Bearer {mikro_server.admin_token}"},
        timeout=30,
    )
    response.raise_for_status()
    live = lexicographic_sort_schema(build_client_schema(response.json()["data"]))
    expected = lexicographic_sort_schema(build_schema(SCHEMA_FILE.read_text()))
    assert _without_descriptions(print_schema(live)) == _without_descriptions(print_schema(expected))


def test_fragments_are_used() -> None:
    # A fragment nothing spreads is dead weight that drifts unnoticed.
    from mikro.api._documents import _definitions

    spread = set()
    for op in all_operations():
        spread |= {
            d.name.value for d in parse(op.document).definitions if isinstance(d, FragmentDefinitionNode)
        }
    fragments = {name for name, (kind, _) in _definitions().items() if kind == "fragment"}
    assert fragments == spread
