"""What the per-request savings must not change: a revoked token is refused at once although tokens are
cached, concurrent requests share one read session per request without mixing their answers, and an
``Idempotency-Key`` claimed inside the mutation's own transaction still runs a mutation once."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mikro.server import Settings, rotate_token
from mikro.server._auth import AuthUser, TokenCache, bump_auth_epoch
from tests.fixtures_servers import process_env
from tests.server._helpers import Api, db_rows, make_representation

pytestmark = pytest.mark.anyio

ME = "{ me { id username } }"


async def _username(api: Api) -> str:
    return str((await api.data(ME))["me"]["username"])


async def _status(api: Api, token: str) -> int:
    response = await api.client.post(
        api.url, json={"query": ME}, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


# --- the token cache ---------------------------------------------------------------------------------


async def test_rotated_token_is_refused_by_the_very_next_request(mikro_server: Any, new_api: Any) -> None:
    """The server has just served (and cached) the token; rotating it from another process, as
    ``mikro user rotate-token`` does, makes the server refuse it on the next request, not after a TTL."""
    api = new_api("revoked")
    name = await _username(api)
    for _ in range(3):  # served from the cache from the second request on
        assert await _status(api, api.token) == 200

    settings = Settings(data_dir=mikro_server.data_dir)
    new_token = await anyio.to_thread.run_sync(rotate_token, settings, name)

    assert await _status(api, api.token) == 401
    assert await _status(api, new_token) == 200
    assert await _username(Api(api.client, api.url, new_token)) == name


async def test_rotate_token_on_the_command_line(mikro_server: Any, new_api: Any) -> None:
    api = new_api("cli-rotated")
    name = await _username(api)
    assert await _status(api, api.token) == 200
    env = process_env()
    command = [sys.executable, "-m", "mikro", "user", "rotate-token", name]
    command += ["--data-dir", str(mikro_server.data_dir)]
    done = await anyio.run_process(command, env=env, check=True)
    new_token = done.stdout.decode().strip()
    assert await _status(api, api.token) == 401
    assert await _status(api, new_token) == 200

    unknown = await anyio.run_process(
        [*command[:5], "nobody-by-this-name", *command[6:]], env=env, check=False
    )
    assert unknown.returncode == 1 and b"no user named" in unknown.stderr


def test_token_cache_expires_bounds_and_follows_the_epoch_file(tmp_path: Path) -> None:
    now = [0.0]
    epoch = tmp_path / "auth-epoch"
    cache = TokenCache(ttl=30.0, size=2, epoch_file=epoch, clock=lambda: now[0])
    alice, bob, carol = (AuthUser(i, n, False) for i, n in enumerate(["alice", "bob", "carol"], 1))

    def put(token_hash: str, user: AuthUser) -> None:
        cache.put(token_hash, user, cache.generation)

    put("a", alice)
    put("b", bob)
    assert cache.get("a") == alice  # alice is now the most recently used
    put("c", carol)  # over the bound: bob, the least recently used, leaves
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (alice, None, carol)

    now[0] = 30.0  # the TTL has passed: ask the database again
    assert cache.get("a") is None and cache.get("c") is None

    put("a", alice)
    bump_auth_epoch(epoch)  # another process changed users or tokens
    assert cache.get("a") is None
    put("a", alice)
    assert cache.get("a") == alice  # the same epoch again: cached
    bump_auth_epoch(epoch)
    assert cache.get("a") is None

    # A lookup that was running while a token was revoked must not be remembered.
    before = cache.generation
    bump_auth_epoch(epoch)
    cache.put("a", alice, before)
    assert cache.get("a") is None
    before = cache.generation
    cache.clear()  # the same, for a change made in this process
    cache.put("a", alice, before)
    assert cache.get("a") is None

    off = TokenCache(ttl=0, size=10)
    off.put("a", alice, off.generation)
    assert off.get("a") is None and len(off) == 0


# --- one read session per request -------------------------------------------------------------------

REP = """query($id: ID!) {
  representation(id: $id) {
    id name tags creator { username } store { id }
    sample { id name } dataset { id name } experiments { id name }
    origins { id name } derived { id name } rois { id } metrics { id } thumbnails { id }
  }
}"""


async def test_concurrent_requests_each_get_their_own_relations(new_api: Any) -> None:
    """Many requests in flight at once, each resolving many relations through DataLoaders that take
    turns on the request's one read session: every answer is complete and belongs to its request."""
    alice, bob = new_api("alice"), new_api("bob")
    expected: dict[str, tuple[Api, dict[str, Any]]] = {}
    for api in (alice, bob):
        name = await _username(api)
        for i in range(3):
            sample = (
                await api.data(
                    "mutation($n: String!) { createSample(input: {name: $n}) { id } }", {"n": f"{name}-s{i}"}
                )
            )["createSample"]["id"]
            origin = await make_representation(api, f"{name}-origin-{i}")
            rep = await make_representation(
                api, f"{name}-rep-{i}", sample=sample, origins=[origin["id"]], tags=[f"t{i}"]
            )
            want = {
                "name": f"{name}-rep-{i}",
                "tags": [f"t{i}"],
                "creator": {"username": name},
                "sample": {"id": sample, "name": f"{name}-s{i}"},
                "origins": [{"id": origin["id"], "name": f"{name}-origin-{i}"}],
            }
            expected[rep["id"]] = (api, want)

    async def check(rep_id: str, api: Api, want: dict[str, Any]) -> None:
        got = (await api.data(REP, {"id": rep_id}))["representation"]
        assert {key: got[key] for key in want} == want
        assert got["derived"] == [] and got["rois"] == [] and got["dataset"] is None

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            for rep_id, (api, want) in expected.items():
                tg.start_soon(check, rep_id, api, want)


async def test_a_failed_read_leaves_the_request_and_the_next_one_unharmed(api: Api) -> None:
    """NOT_FOUND raised inside a read block, beside other reads of the same request (the block's turn on
    the shared session must end), then the next request reads normally."""
    rep = await make_representation(api, "after-a-miss")
    query = """query($id: ID!) {
      rep: representation(id: $id) { name store { id } creator { username } }
      missing: sample(id: 999998) { id }
    }"""
    with anyio.fail_after(30):
        body = (await api.post(query, {"id": rep["id"]})).json()
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    got = await api.data("query($id: ID!) { representation(id: $id) { name } }", {"id": rep["id"]})
    assert got == {"representation": {"name": "after-a-miss"}}


# --- idempotency keys claimed in the mutation's transaction ------------------------------------------

CREATE = "mutation($n: String!) { createSample(input: {name: $n}) { id name } }"


async def test_concurrent_retries_with_one_key_run_the_mutation_once(mikro_server: Any, api: Api) -> None:
    """A client that times out and retries while its first request still runs: whichever of the copies
    reaches the database first wins the key, the others get its answer (or "in progress")."""
    name, key = f"raced-{uuid.uuid4().hex}", uuid.uuid4().hex
    responses: list[httpx.Response] = []

    async def send() -> None:
        responses.append(await api.post(CREATE, {"n": name}, headers={"Idempotency-Key": key}))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(send)

    assert len(db_rows(mikro_server.database_path, "select id from samples where name = ?", name)) == 1
    answers = [r.json() for r in responses if r.status_code == 200]
    assert answers and all(a == answers[0] for a in answers)
    assert "errors" not in answers[0]
    in_progress = [r for r in responses if r.status_code != 200]
    assert all(r.status_code == 409 for r in in_progress)
    # Once the first has finished, a retry is answered from the stored response.
    again = await api.post(CREATE, {"n": name}, headers={"Idempotency-Key": key})
    assert again.json() == answers[0] and again.headers.get("idempotent-replayed") == "true"


async def test_a_mutation_that_wrote_nothing_does_not_use_up_its_key(mikro_server: Any, api: Api) -> None:
    key = uuid.uuid4().hex
    refused = await api.post(CREATE, {"n": "   "}, headers={"Idempotency-Key": key})
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert db_rows(mikro_server.database_path, "select key from idempotency_keys where key = ?", key) == []
    name = f"second-try-{key}"
    fixed = await api.post(CREATE, {"n": name}, headers={"Idempotency-Key": key})
    assert fixed.json()["data"]["createSample"]["name"] == name
