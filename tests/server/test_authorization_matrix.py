"""The authorization matrix, derived from the schema: every operation (query, mutation, subscription)
and every ID it takes (arguments and input fields, at any depth) is tried by user B against user A's
object of that kind. B gets NOT_FOUND (the same answer as for an id that does not exist) or an empty
list, never A's data, and A's objects are unchanged. A new operation or ID field fails
``test_every_id_of_the_schema_has_a_kind`` until it is given the kind of object it names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    Undefined,
    build_schema,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
)

import mikro
from tests.fixtures_servers import MikroServer
from tests.server._helpers import UPLOAD, Api, array_node, b64, db_rows, png_bytes, write_zarr_json
from tests.server.test_subscriptions import connect

pytestmark = pytest.mark.anyio

SCHEMA: GraphQLSchema = build_schema((Path(mikro.__file__).parent / "schema.graphql").read_text())

# The kind of object an ID names, by the name of the argument or input field that holds it; ``id``
# names the object of its operation (``updateSample(id)`` a sample). Store kinds depend on the
# operation: what state of store it takes.
KIND_BY_NAME = {
    "sample": "sample",
    "experiment": "experiment",
    "experiments": "experiment",
    "dataset": "dataset",
    "parent": "dataset",
    "representation": "representation",
    "origins": "representation",
    "origin": "representation",
    "derivedFrom": "representation",
    "roi": "roi",
    "originalFile": "file",
    "representations": "representation",
    "samples": "sample",
    "datasets": "dataset",
}
STORE_KIND_BY_OPERATION = {
    "zarrStore": "finished_store",
    "requestAccess": "finished_store",
    "finishUpload": "open_store",
    "releaseUploads": "open_store",
    "createRepresentation": "unused_store",
    "createRepresentations": "unused_store",
    "createTable": "parquet_store",
    "createFile": "media_store",
    "createFiles": "media_store",
    "requestLevelsUpload": "finished_store",
    "recordLevels": "finished_store",
}
LIST_FIELDS = {"ids"}  # a filter's ids name objects of the listed kind
ID_KINDS = {
    "representation": "representation",
    "sample": "sample",
    "experiment": "experiment",
    "dataset": "dataset",
    "roi": "roi",
    "metric": "metric",
    "table": "table",
    "thumbnail": "thumbnail",
    "zarrStore": "finished_store",
    "file": "file",
}


def _object_of(operation: str) -> str:
    """``updateSample`` -> ``sample``, ``rois`` -> ``roi``."""
    for prefix in ("update", "delete", "create"):
        if operation.startswith(prefix) and operation[len(prefix) :][:1].isupper():
            operation = operation[len(prefix)].lower() + operation[len(prefix) + 1 :]
    if operation in ID_KINDS:
        return ID_KINDS[operation]
    return ID_KINDS[operation[:-1]] if operation.endswith("s") and operation[:-1] in ID_KINDS else operation


def _kind(operation: str, path: tuple[str, ...]) -> str:
    name = path[-1]
    if name == "id" or name in LIST_FIELDS:
        return _object_of(operation)
    if name in ("store", "stores"):
        return STORE_KIND_BY_OPERATION[operation]
    return KIND_BY_NAME[name]


def _is_id(type_: Any) -> bool:
    return get_named_type(type_).name == "ID"


def _id_paths(type_: Any, path: tuple[str, ...], seen: frozenset[str]) -> Iterator[tuple[str, ...]]:
    named = get_named_type(type_)
    if _is_id(type_):
        yield path
    elif isinstance(named, GraphQLInputObjectType) and named.name not in seen:
        for name, field in named.fields.items():
            yield from _id_paths(field.type, (*path, name), seen | {named.name})


@dataclass(frozen=True)
class Case:
    root: str  # query, mutation or subscription
    operation: str
    path: tuple[str, ...]  # argument, then input fields

    @property
    def id(self) -> str:
        return f"{self.operation}({'.'.join(self.path)})"

    @property
    def kind(self) -> str:
        return _kind(self.operation, self.path)


def _cases() -> list[Case]:
    cases = []
    for root, type_ in (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type)):
        assert type_ is not None
        for operation, field in type_.fields.items():
            for arg_name, arg in field.args.items():
                for path in _id_paths(arg.type, (arg_name,), frozenset()):
                    cases.append(Case(root, operation, path))
    assert SCHEMA.subscription_type is not None
    for operation, field in SCHEMA.subscription_type.fields.items():
        for arg_name, arg in field.args.items():
            for path in _id_paths(arg.type, (arg_name,), frozenset()):
                cases.append(Case("subscription", operation, path))
    return cases


CASES = _cases()


def test_every_id_of_the_schema_has_a_kind() -> None:
    kinds = {
        "sample",
        "experiment",
        "dataset",
        "representation",
        "roi",
        "metric",
        "table",
        "thumbnail",
        "file",
    }
    kinds |= {"finished_store", "open_store", "unused_store", "parquet_store", "media_store"}
    for case in CASES:
        assert case.kind in kinds, case.id


FILE = b"a file of B's, or of A's"
FILE_HASH = "sha256:" + hashlib.sha256(FILE).hexdigest()
# Inputs checked before the objects they name: createFile's size and hash of its file, recordLevels'
# level paths. Given right, so that the ownership check is what answers.
FIELD_VALUES: dict[str, Any] = {
    "size": len(FILE),
    "contentHash": FILE_HASH,
    "mediaType": "application/octet-stream",
    "path": "levels-0/1",
}


# --- the objects ---------------------------------------------------------------------------------------


class _Owner:
    """One user creating objects over blocking HTTP (module fixtures run outside any event loop)."""

    def __init__(self, server: MikroServer, name: str) -> None:
        self.server = server
        self.token = server.add_user(name)

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.server.query(query, variables, token=self.token)
        assert not body.get("errors"), body
        return dict(body["data"])

    def create(self, operation: str, input_type: str, value: dict[str, Any]) -> str:
        query = f"mutation($i: {input_type}!) {{ {operation}(input: $i) {{ id }} }}"
        return str(self.data(query, {"i": value})[operation]["id"])

    def upload(self, kind: str, write: Any = None) -> str:
        grant = self.data(UPLOAD, {"kind": kind})["requestUpload"]
        if write is not None:
            write(Path(grant["path"]))
        return str(grant["storeId"])

    def objects(self) -> dict[str, str]:
        """One object of every kind."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        def zarr(path: Path) -> None:
            write_zarr_json(path, array_node([2, 8, 8], [2, 8, 8], "uint16", ["z", "y", "x"]))

        def media(path: Path) -> None:
            (path / "file").write_bytes(FILE)

        def parquet(path: Path) -> None:
            pq.write_table(pa.table({"x": [1, 2]}), str(path / "table.parquet"))

        finish = "mutation($s: ID!) { finishUpload(store: $s) { id } }"
        made: dict[str, str] = {}
        made["sample"] = self.create("createSample", "SampleInput", {"name": "s"})
        made["experiment"] = self.create("createExperiment", "ExperimentInput", {"name": "e"})
        made["dataset"] = self.create("createDataset", "DatasetInput", {"name": "d"})
        for name in ("finished_store", "unused_store"):
            made[name] = self.upload("ZARR", zarr)
            self.data(finish, {"s": made[name]})
        made["open_store"] = self.upload("ZARR")
        rep = {"store": made["finished_store"], "name": "r"}
        made["representation"] = self.create("createRepresentation", "RepresentationInput", rep)
        roi = {"representation": made["representation"], "kind": "POINT", "vectors": [[0, 0, 0, 1, 1]]}
        made["roi"] = self.create("createRoi", "RoiInput", roi)
        metric = {"representation": made["representation"], "key": "k", "value": 1}
        made["metric"] = self.create("createMetric", "MetricInput", metric)
        made["table"] = self.create(
            "createTable", "TableInput", {"store": self.upload("PARQUET", parquet), "name": "t"}
        )
        made["parquet_store"] = self.upload("PARQUET", parquet)
        thumbnail = {"representation": made["representation"], "png": b64(png_bytes(4, 4))}
        made["thumbnail"] = self.create("createThumbnail", "ThumbnailInput", thumbnail)
        file = {
            "store": self.upload("MEDIA", media),
            "name": "f.bin",
            "size": len(FILE),
            "contentHash": FILE_HASH,
        }
        made["file"] = self.create("createFile", "FileInput", file)
        made["media_store"] = self.upload("MEDIA", media)
        return made


@pytest.fixture(scope="module")
def matrix(mikro_server: MikroServer) -> tuple[_Owner, dict[str, str], _Owner, dict[str, str]]:
    alice, bob = _Owner(mikro_server, "matrix-a"), _Owner(mikro_server, "matrix-b")
    return alice, alice.objects(), bob, bob.objects()


# --- the requests ------------------------------------------------------------------------------------


def _value(type_: Any, name: str, case: Case, own: dict[str, str]) -> Any:
    """A valid value for a required argument or input field, using B's own objects for ids."""
    if name == "vectors":
        return [[0, 0, 0, 1, 1]]
    nullable = get_nullable_type(type_)
    if isinstance(nullable, GraphQLList):
        return [_value(nullable.of_type, name, case, own)]
    if _is_id(nullable):
        return own[_kind(case.operation, (name,))]
    if isinstance(nullable, GraphQLInputObjectType):
        return {
            field_name: _value(field.type, field_name, case, own)
            for field_name, field in nullable.fields.items()
            if isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined
        }
    if isinstance(nullable, GraphQLEnumType):
        return next(iter(nullable.values))
    leaf = nullable.name
    if name in FIELD_VALUES:
        return FIELD_VALUES[name]
    return {"String": "x", "Int": 1, "Float": 0.0, "Boolean": False, "JSON": 1}.get(
        leaf, b64(png_bytes(4, 4)) if leaf == "Base64" else "2024-01-01T00:00:00+00:00"
    )


def _set(container: dict[str, Any], path: tuple[str, ...], value: Any, type_: Any) -> None:
    """Put A's id at ``path`` (wrapped in a list where the schema has one)."""
    name, rest = path[0], path[1:]
    nullable = get_nullable_type(type_)
    if isinstance(nullable, GraphQLList) and not rest:
        container[name] = [value]
        return
    if isinstance(nullable, GraphQLList):
        item_type = get_nullable_type(nullable.of_type)
        items = container.get(name) or [{}]
        _set(items[0], rest, value, item_type.fields[rest[0]].type)
        container[name] = items
        return
    if not rest:
        container[name] = value
        return
    assert isinstance(nullable, GraphQLInputObjectType)
    child = container.setdefault(name, {})
    _set(child, rest, value, nullable.fields[rest[0]].type)


def _request(case: Case, own: dict[str, str], theirs: dict[str, str]) -> tuple[str, dict[str, Any]]:
    root = {"query": SCHEMA.query_type, "mutation": SCHEMA.mutation_type}.get(
        case.root, SCHEMA.subscription_type
    )
    assert root is not None
    field: GraphQLField = root.fields[case.operation]
    variables: dict[str, Any] = {}
    for name, arg in field.args.items():
        if isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined:
            variables[name] = _value(arg.type, name, case, own)
    _set(variables, case.path, theirs[case.kind], field.args[case.path[0]].type)
    declared = ", ".join(f"${name}: {arg.type}" for name, arg in field.args.items() if name in variables)
    passed = ", ".join(f"{name}: ${name}" for name in variables)
    selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
    head = f"{case.root}({declared})" if declared else case.root
    return f"{head} {{ {case.operation}({passed}){selection} }}", variables


@pytest.mark.single_backend(reason="the server's answers do not depend on the client's event loop; ~70 cases")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_user_b_cannot_reach_user_a_objects(
    mikro_server: MikroServer, matrix: tuple[_Owner, dict[str, str], _Owner, dict[str, str]], case: Case
) -> None:
    alice, theirs, bob, own = matrix
    query, variables = _request(case, own, theirs)
    if case.root == "subscription":
        async with connect(mikro_server.ws_url, {"token": bob.token}) as sub:
            await sub.subscribe(query, variables)
            with anyio.fail_after(30):
                message = await sub.ws.receive_json()
        errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors")
        assert errors and errors[0]["extensions"]["code"] == "NOT_FOUND", (query, message)
    else:
        async with httpx.AsyncClient(timeout=60) as http:
            body = (await Api(http, mikro_server.url, bob.token).post(query, variables)).json()
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", (query, variables, body)
        else:
            # A filter naming A's object finds nothing of B's.
            assert body["data"][case.operation] == [], (query, variables, body)
    # No storage grant went to B for A's stores, and A's objects are all still there, unchanged.
    bob_id = int(bob.data("{ me { id } }")["me"]["id"])
    stores = [theirs[kind] for kind in theirs if kind.endswith("store")]
    marks = ",".join("?" * len(stores))
    sql = f"select id from grants where user_id = ? and store_id in ({marks})"
    assert db_rows(mikro_server.database_path, sql, bob_id, *stores) == []
    kinds = ("sample", "experiment", "dataset", "representation", "roi", "metric", "table", "thumbnail")
    declared = ", ".join(f"${kind}: ID!" for kind in kinds)
    fields = " ".join(f"{kind}(id: ${kind}) {{ id }}" for kind in kinds)
    seen = alice.data(f"query({declared}) {{ {fields} sample(id: $sample) {{ name }} }}", theirs)
    assert {kind: seen[kind]["id"] for kind in kinds} == {kind: theirs[kind] for kind in kinds}
