"""The reference server's strawberry schema prints to exactly mikro/schema.graphql (the contract)."""

from __future__ import annotations

from pathlib import Path

from graphql import build_schema, lexicographic_sort_schema, print_schema

SDL = Path(__file__).resolve().parents[1] / "mikro" / "schema.graphql"


def _canonical(sdl: str) -> str:
    return print_schema(lexicographic_sort_schema(build_schema(sdl)))


def test_server_schema_matches_the_sdl_contract() -> None:
    from mikro.server import build_schema as build_server_schema

    # strawberry prints its schema to SDL; graphql-core normalises both sides (order, formatting), so
    # any difference in a type, field, argument, default or description fails here.
    server = _canonical(build_server_schema().as_str())
    contract = _canonical(SDL.read_text())
    assert server == contract


def test_contract_is_a_complete_api() -> None:
    schema = build_schema(SDL.read_text())
    assert schema.query_type is not None and schema.mutation_type is not None
    assert schema.subscription_type is not None
    mutations = set(schema.mutation_type.fields)
    for kind in ("Sample", "Experiment", "Dataset", "Representation", "Roi", "Metric", "Table", "Thumbnail"):
        assert {f"create{kind}", f"update{kind}", f"delete{kind}"} <= mutations
    assert {"requestUpload", "finishUpload", "requestAccess"} <= mutations
