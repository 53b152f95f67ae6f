"""The server's execution context answers plain fields without graphql-core's per-field machinery
(mikro/server/_execution.py). Its answers must be exactly graphql-core's own: the same documents
(aliases, fragments, ``__typename``, directives, nulls where none may be, values that do not coerce,
a failing resolver) run through strawberry's default execution context and through mikro's, twice
(the second run answers from the cached plans), give the same data and the same errors with the
same paths."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from mikro.server import _execution
from mikro.server._execution import CachingExecutionContext


@strawberry.enum
class Colour(enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


@strawberry.type
class Item:
    id: strawberry.ID
    name: str
    count: int
    ratio: float | None
    colour: Colour
    tags: list[str]
    maybe_tags: list[str | None] | None
    # Annotated non-null, holding what may not be shown: graphql-core's errors must come out.
    broken_name: str
    broken_tags: list[str]
    broken_count: int

    @strawberry.field
    def shouting(self) -> str:
        return self.name.upper()

    @strawberry.field
    def failing(self) -> str | None:
        raise ValueError(f"no answer for {self.name}")


def _items() -> list[Item]:
    def item(i: int, **overrides: Any) -> Item:
        fields: dict[str, Any] = {
            "id": strawberry.ID(str(i)),
            "name": f"item-{i}",
            "count": i,
            "ratio": None if i % 2 else i / 3,
            "colour": Colour.RED if i % 2 else Colour.BLUE,
            "tags": [f"t{i}", "x"],
            "maybe_tags": None if i == 1 else ["a", None],
            "broken_name": f"fine-{i}",
            "broken_tags": ["ok"],
            "broken_count": i,
        }
        fields.update(overrides)
        return Item(**fields)

    return [
        item(0),
        item(1, broken_name=None),  # null for a non-null field
        item(2, broken_tags=["a", None]),  # null item in a list of non-null
        item(3, broken_count="not a number"),  # does not coerce to Int
        item(4, broken_tags=("a", "b")),  # a tuple: still a list to graphql-core
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return _items()

    @strawberry.field
    def nullable_items(self) -> list[Item | None]:
        return [*_items(), None]

    @strawberry.field
    def item(self, id: strawberry.ID) -> Item | None:
        return next((i for i in _items() if i.id == id), None)


DOCUMENTS = [
    # Aliases, a fragment, an inline fragment, __typename, a field selected twice.
    """
    query Aliased {
      items {
        __typename
        key: id
        name
        label: name
        ...Counts
        ... on Item { colour tags maybeTags }
        name
      }
    }
    fragment Counts on Item { count ratio shouting }
    """,
    # Errors: nulls where none may be, a value that does not coerce, a failing resolver; each nulls
    # its item only.
    "query Broken { nullableItems { id brokenName brokenTags brokenCount failing } }",
    # A non-null error in a list of non-null items nulls the list, and so the root.
    "query Nulls { items { id brokenName } }",
    # Directives and variables (collected per request, not from the cache).
    """
    query Directed($skip: Boolean!, $id: ID!) {
      item(id: $id) { id name @skip(if: $skip) tags @include(if: $skip) }
      items { id count @include(if: $skip) }
    }
    """,
]


def _schema(context_class: type) -> strawberry.Schema:
    return strawberry.Schema(query=Query, execution_context_class=context_class)


def _answer(schema: strawberry.Schema, document: str, variables: dict[str, Any] | None) -> Any:
    result = schema.execute_sync(document, variable_values=variables)
    errors = sorted(
        (e.message, tuple(e.path or ()), tuple((loc.line, loc.column) for loc in e.locations or ()))
        for e in result.errors or []
    )
    return result.data, errors


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("variables", [{"skip": True, "id": "2"}, {"skip": False, "id": "9"}])
def test_answers_equal_graphql_cores_own(document: str, variables: dict[str, Any]) -> None:
    plain = _schema(StrawberryGraphQLCoreExecutionContext)
    fast = _schema(CachingExecutionContext)
    used = variables if "$" in document else None
    expected = _answer(plain, document, used)
    for _ in range(3):  # the first run plans, the later ones answer from the plans
        assert _answer(fast, document, used) == expected


def test_the_answers_show_what_the_documents_ask() -> None:
    """The comparison above compares real answers: values, coercions and errors a client sees."""
    fast = _schema(CachingExecutionContext)
    data, errors = _answer(fast, DOCUMENTS[0], None)
    first = data["items"][0]
    assert list(first) == [
        "__typename",
        "key",
        "name",
        "label",
        "count",
        "ratio",
        "shouting",
        "colour",
        "tags",
        "maybeTags",
    ]
    assert first == {
        "__typename": "Item",
        "key": "0",
        "name": "item-0",
        "label": "item-0",
        "count": 0,
        "ratio": 0.0,
        "shouting": "ITEM-0",
        "colour": "BLUE",
        "tags": ["t0", "x"],
        "maybeTags": ["a", None],
    }
    assert data["items"][1]["maybeTags"] is None and errors == []
    # ... and the plain fields were answered by plans, not by graphql-core's own path.
    planned = {
        plan.leaf.name
        for _, parent, plans in _execution._plans.values()
        for _, _, plan in plans
        if isinstance(plan, _execution._Plan) and parent.name == "Item"
    }
    assert {"ID", "String", "Int", "Float", "Colour"} <= planned

    data, errors = _answer(fast, DOCUMENTS[1], None)
    items = data["nullableItems"]
    assert items[0]["failing"] is None and items[4]["brokenTags"] == ["a", "b"]
    assert [item is None for item in items] == [False, True, True, True, False, True]
    messages = {path: message for message, path, _ in errors}
    where = "nullableItems"
    assert messages[(where, 1, "brokenName")] == "Cannot return null for non-nullable field Item.brokenName."
    assert (where, 2, "brokenTags", 1) in messages
    assert "Int cannot represent non-integer value" in messages[(where, 3, "brokenCount")]
    assert messages[(where, 0, "failing")] == "no answer for item-0"

    data, errors = _answer(fast, DOCUMENTS[2], None)
    assert data is None and [path for _, path, _ in errors] == [("items", 1, "brokenName")]
