"""The server's execution context answers plain fields without graphql-core's per-field machinery
(mikro/server/_execution.py). Its answers must be exactly graphql-core's own: the same documents
(aliases, fragments, ``__typename``, directives, nulls where none may be, values that do not coerce,
a failing resolver; objects, lists of objects and relations read at once, with errors and awaitables
inside them) run through strawberry's default execution context and through mikro's, twice
(the second run answers from the cached plans), give the same data and the same errors with the
same paths."""

from __future__ import annotations

import asyncio
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
    sizes: list[int]
    scales: list[float] | None

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
            "sizes": [i, 2],
            "scales": [0.5, float(i)],
        }
        fields.update(overrides)
        return Item(**fields)

    return [
        item(0),
        item(1, broken_name=None),  # null for a non-null field
        item(2, broken_tags=["a", None]),  # null item in a list of non-null
        item(3, broken_count="not a number"),  # does not coerce to Int
        item(4, broken_tags=("a", "b")),  # a tuple: still a list to graphql-core
        item(5, broken_count=2**31),  # beyond GraphQL's 32-bit Int
        item(6, count=True),  # a bool as an Int: 1
        item(7, sizes=[True, 2**31]),  # in a list: a bool as an Int, an Int beyond 32 bits
        item(8, scales=[float("nan"), float("inf")]),  # floats that are no numbers
    ]


# --- objects and relations: fields answered by object plans -------------------------------------------


@strawberry.type
class Part:
    name: str
    # Null for one part: the error goes up to the nearest nullable field, through lists and objects.
    weight: int

    @strawberry.field
    def failing(self) -> str | None:
        if self.name == "bad":
            raise ValueError("a failing part")
        return self.name

    @strawberry.field
    async def later(self) -> str:
        # An awaitable inside a planned object: its completion is awaited, errors included.
        await asyncio.sleep(0)
        if self.name == "late":
            raise ValueError("a late failure")
        return self.name.upper()


def _owner_now(source: Any, _root: Any, _context: Any) -> Any:
    """The AT_ONCE reader of `Owned.owner`: NOT_LOADED for some, to be resolved the ordinary way."""
    if source.owner_name == "far":
        return _execution.NOT_LOADED
    if source.owner_name == "gone":
        raise LookupError("not readable now")
    return _owner(source)


def _owner(source: Any) -> Any:
    if source.owner_name == "gone":
        raise LookupError("the owner was deleted")
    return None if source.owner_name is None else Part(name=source.owner_name, weight=1)


@strawberry.type
class Owned:
    id: strawberry.ID
    parts: list[Part]
    main_part: Part | None
    maybe_parts: list[Part | None] | None
    required_part: Part
    owner_name: strawberry.Private[str | None]

    @strawberry.field(metadata={_execution.AT_ONCE: _owner_now})
    def owner(self) -> Part | None:
        return _owner(self)

    @strawberry.field(metadata={_execution.AT_ONCE: lambda source, _root, _context: source.siblings()})
    def siblings(self) -> list[Owned]:
        return [o for o in _owned() if o.id != self.id and o.id in {"0", "1"}]


def _owned() -> list[Owned]:
    def part(name: str, weight: Any = 1) -> Part:
        return Part(name=name, weight=weight)

    def owned(i: int, **overrides: Any) -> Owned:
        fields: dict[str, Any] = {
            "id": strawberry.ID(str(i)),
            "parts": [part(f"p{i}"), part("late" if i == 5 else f"q{i}")],
            "main_part": part("bad" if i == 2 else f"m{i}") if i % 3 else None,
            "maybe_parts": [None, part(f"x{i}")] if i % 2 else None,
            "required_part": part(f"r{i}"),
            "owner_name": {1: None, 2: "far", 3: "gone"}.get(i, f"o{i}"),
        }
        fields.update(overrides)
        return Owned(**fields)

    return [
        owned(0),
        owned(1),
        owned(2),
        owned(3),
        owned(4, parts=[part("a"), part("b", weight=None)]),  # null in a non-null item's field
        owned(5),
        owned(6, main_part=part("m6", weight="heavy")),  # does not coerce, in a nullable object
        owned(7, required_part=None),  # null for a non-null object
        owned(8, parts=(part("t"),)),  # a tuple: still a list to graphql-core
        owned(9, maybe_parts=[part("y", weight=None), None]),  # an error nulls a nullable item
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return _items()

    @strawberry.field
    def owned(self) -> list[Owned | None]:
        return _owned()

    @strawberry.field
    def all_owned(self) -> list[Owned]:
        return _owned()[6:8]

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
    "query Numbers { nullableItems { id count ratio sizes scales } }",
    # A non-null error in a list of non-null items nulls the list, and so the root.
    "query Nulls { items { id brokenName } }",
    # Directives and variables (collected per request, not from the cache).
    """
    query Directed($skip: Boolean!, $id: ID!) {
      item(id: $id) { id name @skip(if: $skip) tags @include(if: $skip) }
      items { id count @include(if: $skip) }
    }
    """,
    # Objects and relations: aliases, fragments, a field twice, nulls, errors at every depth, awaitables
    # inside, relations that are at hand and relations that are not (resolved the ordinary way).
    """
    query Owners {
      owned {
        id
        parts { name weight failing later }
        first: parts { name }
        main: mainPart { ...PartFields }
        mainPart { weight }
        maybeParts { name weight }
        requiredPart { name }
        owner { name weight }
        boss: owner { ...PartFields }
        siblings { id owner { name } siblings { id parts { name } } }
      }
    }
    fragment PartFields on Part { name failing }
    """,
    # A non-null error in a list of non-null objects nulls the whole root.
    "query Required { allOwned { id requiredPart { name } siblings { id parts { weight } } } }",
    "query Fine { allOwned { id ... on Owned { parts { name } siblings { id } } owner { name } } }",
]


def _schema(context_class: type) -> strawberry.Schema:
    return strawberry.Schema(query=Query, execution_context_class=context_class)


def _answer(schema: strawberry.Schema, document: str, variables: dict[str, Any] | None) -> Any:
    # Run by asyncio: some fields are coroutines (graphql-core awaits them with asyncio's helpers).
    result = asyncio.run(schema.execute(document, variable_values=variables))
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
    assert [item is None for item in items] == [
        False,
        True,
        True,
        True,
        False,
        True,
        False,
        False,
        False,
        True,
    ]
    messages = {path: message for message, path, _ in errors}
    where = "nullableItems"
    assert messages[(where, 1, "brokenName")] == "Cannot return null for non-nullable field Item.brokenName."
    assert (where, 2, "brokenTags", 1) in messages
    assert "Int cannot represent non-integer value" in messages[(where, 3, "brokenCount")]
    assert messages[(where, 0, "failing")] == "no answer for item-0"
    assert "Int cannot represent non 32-bit signed integer" in messages[(where, 5, "brokenCount")]

    data, errors = _answer(fast, DOCUMENTS[2], None)
    numbers = data["nullableItems"]
    assert numbers[0] == {"id": "0", "count": 0, "ratio": 0.0, "sizes": [0, 2], "scales": [0.5, 0.0]}
    assert numbers[6]["count"] == 1 and numbers[7] is None
    assert numbers[8]["ratio"] == 8 / 3 and numbers[8]["scales"] is None
    assert {path for _, path, _ in errors} == {
        ("nullableItems", 7, "sizes", 1),
        ("nullableItems", 8, "scales", 0),
    }

    data, errors = _answer(fast, DOCUMENTS[3], None)
    assert data is None and [path for _, path, _ in errors] == [("items", 1, "brokenName")]


def test_objects_and_relations_are_answered_by_plans() -> None:
    """The object documents above compare real answers, and the plans answered the object fields."""
    fast = _schema(CachingExecutionContext)
    data, errors = _answer(fast, DOCUMENTS[5], None)
    owned = data["owned"]
    assert owned[0]["parts"] == [
        {"name": "p0", "weight": 1, "failing": "p0", "later": "P0"},
        {"name": "q0", "weight": 1, "failing": "q0", "later": "Q0"},
    ]
    assert owned[0]["siblings"] == [
        {"id": "1", "owner": None, "siblings": [{"id": "0", "parts": [{"name": "p0"}, {"name": "q0"}]}]}
    ]
    assert owned[2]["owner"] == {"name": "far", "weight": 1}  # not at hand: resolved the ordinary way
    assert owned[2]["main"] == {"name": "bad", "failing": None}
    # Errors null the nearest nullable field: the image of the bad part's weight, the late part ...
    assert [o is None for o in owned] == [False, False, False, False, True, True, False, True, False, False]
    assert owned[6]["mainPart"] is None and owned[9]["maybeParts"] == [None, None]
    paths = {path for _, path, _ in errors}
    assert {
        ("owned", 2, "main", "failing"),
        ("owned", 3, "owner"),
        ("owned", 3, "boss"),
        ("owned", 4, "parts", 1, "weight"),
        ("owned", 5, "parts", 1, "later"),
        ("owned", 6, "mainPart", "weight"),
        ("owned", 7, "requiredPart"),
        ("owned", 9, "maybeParts", 0, "weight"),
    } <= paths
    planned = {
        (parent.name, name)
        for _, parent, plans in _execution._plans.values()
        for name, _, plan in plans
        if isinstance(plan, _execution._ObjectPlan)
    }
    assert {("Owned", "parts"), ("Owned", "main"), ("Owned", "owner"), ("Owned", "siblings")} <= planned

    data, errors = _answer(fast, DOCUMENTS[6], None)
    assert data is None and [path for _, path, _ in errors] == [("allOwned", 1, "requiredPart")]
