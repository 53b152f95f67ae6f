"""``Idempotency-Key``: a retried mutation runs once and the retry gets the first answer."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.server._helpers import Api, db_rows

pytestmark = pytest.mark.anyio

CREATE = "mutation($n: String!) { createSample(input: {name: $n}) { id name } }"


async def _count(server: Any, name: str) -> int:
    return len(db_rows(server.database_path, "select id from samples where name = ?", name))


async def test_same_key_twice_runs_once(mikro_server: Any, api: Api) -> None:
    name, key = f"once-{uuid.uuid4().hex}", uuid.uuid4().hex
    first = await api.post(CREATE, {"n": name}, headers={"Idempotency-Key": key})
    second = await api.post(CREATE, {"n": name}, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert "errors" not in first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert await _count(mikro_server, name) == 1
    # Without a key, a repeat is a new request.
    await api.post(CREATE, {"n": name})
    assert await _count(mikro_server, name) == 2


async def test_key_reused_for_a_different_request(mikro_server: Any, api: Api) -> None:
    key = uuid.uuid4().hex
    await api.post(CREATE, {"n": "a"}, headers={"Idempotency-Key": key})
    other = await api.post(CREATE, {"n": f"b-{key}"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert await _count(mikro_server, f"b-{key}") == 0


async def test_keys_belong_to_one_user(mikro_server: Any, new_api: Any) -> None:
    alice, bob = new_api("alice"), new_api("bob")
    name, key = f"shared-key-{uuid.uuid4().hex}", uuid.uuid4().hex
    a = await alice.post(CREATE, {"n": name}, headers={"Idempotency-Key": key})
    b = await bob.post(CREATE, {"n": name}, headers={"Idempotency-Key": key})
    assert a.json()["data"]["createSample"]["id"] != b.json()["data"]["createSample"]["id"]
    assert await _count(mikro_server, name) == 2


async def test_failed_mutation_can_be_retried_with_the_same_key(mikro_server: Any, api: Api) -> None:
    key = uuid.uuid4().hex
    query = "mutation($n: String!, $d: ID) { createDataset(input: {name: $n, parent: $d}) { id } }"
    name = f"retry-{key}"
    bad = await api.post(query, {"n": name, "d": "999999"}, headers={"Idempotency-Key": key})
    assert bad.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # A deterministic error is remembered like any answer: the same request gets the same error.
    again = await api.post(query, {"n": name, "d": "999999"}, headers={"Idempotency-Key": key})
    assert again.json() == bad.json()
    assert db_rows(mikro_server.database_path, "select id from datasets where name = ?", name) == []


async def test_queries_are_not_stored(mikro_server: Any, api: Api) -> None:
    key = uuid.uuid4().hex
    first = await api.post("{ samples { id } }", headers={"Idempotency-Key": key})
    await api.data('mutation { createSample(input: {name: "new"}) { id } }')
    second = await api.post("{ samples { id } }", headers={"Idempotency-Key": key})
    assert len(second.json()["data"]["samples"]) == len(first.json()["data"]["samples"]) + 1
    assert db_rows(mikro_server.database_path, "select key from idempotency_keys where key = ?", key) == []
