"""The GraphQL transport against a scripted HTTP server: retries, idempotency keys, error mapping."""

from __future__ import annotations

import socket
import threading
from typing import Any

import anyio
import pydantic
import pytest

import mikro
from mikro.api import operation
from tests.client._scripted import Forward, Reply, ScriptedServer, Stall

QUERY = "query Me { me { id username isAdmin } }"
MUTATION = 'mutation { createSample(input: {name: "x"}) { id } }'
OK = {"data": {"me": {"id": "1", "username": "u", "isAdmin": False}}}


def session(url: str, **kwargs: object) -> mikro.Mikro:
    kwargs.setdefault("token", "t0ken")
    kwargs.setdefault("timeout", 10)
    return mikro.connect(url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_query_is_retried_after_503s(scripted: ScriptedServer) -> None:
    scripted.script.extend([Reply(503, "busy"), Reply(503, "busy"), Reply(200, OK)])
    async with session(scripted.url) as m:
        user = await m.me()
    assert user.username == "u"
    assert len(scripted.seen) == 3
    assert all(s.headers["authorization"] == "Bearer t0ken" for s in scripted.seen)


@pytest.mark.anyio
async def test_query_gives_up_after_the_configured_retries(scripted: ScriptedServer) -> None:
    scripted.script.extend([Reply(502, "bad gateway")] * 5)
    async with session(scripted.url, retries=2) as m:
        with pytest.raises(mikro.HTTPStatusError) as info:
            await m.me()
    assert info.value.status_code == 502
    assert len(scripted.seen) == 3


@pytest.mark.anyio
async def test_retries_zero_sends_once(scripted: ScriptedServer) -> None:
    scripted.script.extend([Reply(504, "timeout"), Reply(200, OK)])
    async with session(scripted.url, retries=0) as m:
        with pytest.raises(mikro.HTTPStatusError):
            await m.me()
    assert len(scripted.seen) == 1


@pytest.mark.anyio
async def test_mutation_without_key_is_not_repeated(scripted: ScriptedServer) -> None:
    scripted.script.extend([Reply(503, "busy"), Reply(200, {"data": {"createSample": {"id": "1"}}})])
    async with session(scripted.url) as m:
        with pytest.raises(mikro.HTTPStatusError) as info:
            await m.execute(MUTATION)
    assert info.value.status_code == 503
    assert len(scripted.seen) == 1
    assert "idempotency-key" not in scripted.seen[0].headers


@pytest.mark.anyio
async def test_typed_mutation_is_retried_with_one_key(scripted: ScriptedServer) -> None:
    created = {"data": {"deleteSample": "7"}}
    scripted.script.extend([Reply(503, "busy"), Reply(502, "bad"), Reply(200, created)])
    async with session(scripted.url) as m:
        assert await m.delete_sample("7") == "7"
        keys = [s.headers.get("idempotency-key") for s in scripted.seen]
        assert len(keys) == 3 and keys[0] and len(set(keys)) == 1
        # A second logical call is a new request to the server: a new key.
        scripted.script.append(Reply(200, created))
        await m.delete_sample("7")
    assert scripted.seen[-1].headers["idempotency-key"] != keys[0]


@pytest.mark.anyio
async def test_429_retry_after_is_honoured(scripted: ScriptedServer) -> None:
    scripted.script.extend([Reply(429, "slow down", {"retry-after": "1"}), Reply(200, OK)])
    async with session(scripted.url) as m:
        await m.me()
    assert len(scripted.seen) == 2
    # The client waited at least as long as the server asked before trying again.
    assert scripted.seen[1].at - scripted.seen[0].at >= 0.95


@pytest.mark.anyio
async def test_connection_refused_is_retried_then_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now: every attempt is refused.
    async with session(f"http://127.0.0.1:{port}/graphql", timeout=1, retries=5) as m:
        with anyio.fail_after(10):
            with pytest.raises(mikro.ConnectError) as info:
                await m.me()
    assert f"127.0.0.1:{port}" in str(info.value)


@pytest.mark.anyio
async def test_unresponsive_listener_gives_connect_error_within_timeout() -> None:
    # A listener whose accept backlog is full: the kernel drops further SYNs, so connecting hangs
    # exactly like a host that does not answer.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        async with session(f"http://127.0.0.1:{port}/graphql", timeout=0.5, retries=2) as m:
            with anyio.fail_after(8):
                with pytest.raises(mikro.ConnectError, match=r"within 0\.5 s"):
                    await m.me()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        (Reply(401, ""), mikro.AuthenticationError, "UNAUTHENTICATED"),
        (
            Reply(401, {"errors": [{"message": "bad token", "extensions": {"code": "UNAUTHENTICATED"}}]}),
            mikro.AuthenticationError,
            "UNAUTHENTICATED",
        ),
        (
            Reply(
                200,
                {
                    "data": None,
                    "errors": [{"message": "no", "path": ["sample"], "extensions": {"code": "FORBIDDEN"}}],
                },
            ),
            mikro.PermissionDeniedError,
            "FORBIDDEN",
        ),
        (
            Reply(
                200,
                {
                    "data": None,
                    "errors": [{"message": "gone", "path": ["sample"], "extensions": {"code": "NOT_FOUND"}}],
                },
            ),
            mikro.NotFoundError,
            "NOT_FOUND",
        ),
        (
            Reply(
                200, {"data": None, "errors": [{"message": "bad", "extensions": {"code": "BAD_USER_INPUT"}}]}
            ),
            mikro.ValidationError,
            "BAD_USER_INPUT",
        ),
        (
            Reply(
                200,
                {
                    "data": None,
                    "errors": [
                        {"message": "Cannot query field 'x'", "locations": [{"line": 1, "column": 3}]}
                    ],
                },
            ),
            mikro.ValidationError,
            None,
        ),
        (
            Reply(
                200,
                {
                    "data": None,
                    "errors": [
                        {"message": "boom", "path": ["me"], "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
                    ],
                },
            ),
            mikro.GraphQLError,
            "INTERNAL_SERVER_ERROR",
        ),
        (Reply(500, "<html>oops</html>"), mikro.HTTPStatusError, None),
        (Reply(404, "not here"), mikro.HTTPStatusError, None),
    ],
)
async def test_answers_map_to_typed_errors(
    scripted: ScriptedServer, reply: Reply, error: type[Exception], code: str | None
) -> None:
    scripted.script.append(reply)
    async with session(scripted.url) as m:
        with pytest.raises(error) as info:
            await m.me()
    assert type(info.value) is error
    if isinstance(info.value, mikro.GraphQLError):
        assert info.value.code == code
    else:
        assert isinstance(info.value, mikro.HTTPStatusError)
        assert info.value.status_code == reply.status
    assert len(scripted.seen) == 1  # none of these is worth repeating


@pytest.mark.anyio
async def test_graphql_error_keeps_path_and_message(scripted: ScriptedServer) -> None:
    body = {
        "data": None,
        "errors": [
            {"message": "Sample 9 not found", "path": ["sample"], "extensions": {"code": "NOT_FOUND"}}
        ],
    }
    scripted.script.append(Reply(200, body))
    async with session(scripted.url) as m:
        with pytest.raises(mikro.NotFoundError) as info:
            await m.get_sample(9)
    assert info.value.path == ["sample"]
    assert "Sample 9 not found" in str(info.value)
    assert scripted.seen[0].body["variables"] == {"id": "9"}
    assert scripted.seen[0].body["operationName"] == "GetSample"


@pytest.mark.anyio
async def test_blocking_transport_retries_from_a_worker_thread(scripted: ScriptedServer) -> None:
    grant = {
        "storeId": "5",
        "uploadKind": "ZARR",
        "kind": "FILE",
        "endpoint": None,
        "region": None,
        "bucket": "local",
        "prefix": "zarr/abc",
        "path": "/tmp/x/zarr/abc",
        "write": False,
        "credentials": None,
        "expiresAt": "2030-01-01T00:00:00+00:00",
    }
    scripted.script.extend([Reply(503, "busy"), Reply(200, {"data": {"requestAccess": grant}})])
    async with session(scripted.url) as m:
        provide = m.grant_provider("5")
        loop_thread = threading.get_ident()
        threads: list[int] = []

        def in_worker() -> mikro.datalayer.StorageGrant:
            threads.append(threading.get_ident())
            return provide()

        storage = await anyio.to_thread.run_sync(in_worker, limiter=m.thread_limiter)
    assert threads and threads[0] != loop_thread
    assert storage.kind == "file" and storage.path == "/tmp/x/zarr/abc" and storage.store_id == "5"
    assert storage.expires_at.tzinfo is not None
    keys = {s.headers.get("idempotency-key") for s in scripted.seen}
    assert len(scripted.seen) == 2 and len(keys) == 1 and None not in keys
    assert scripted.seen[0].body["variables"] == {"store": "5", "write": False}


@pytest.mark.anyio
async def test_grant_provider_failure_is_a_grant_error(scripted: ScriptedServer) -> None:
    denied = {
        "data": None,
        "errors": [{"message": "not yours", "path": ["requestAccess"], "extensions": {"code": "FORBIDDEN"}}],
    }
    scripted.script.append(Reply(200, denied))
    async with session(scripted.url) as m:
        provide = m.grant_provider("5", write=True)
        with pytest.raises(mikro.GrantError) as info:
            await anyio.to_thread.run_sync(provide)
    assert isinstance(info.value.__cause__, mikro.PermissionDeniedError)
    # After the session ends the provider refuses clearly instead of using a closed client.
    with pytest.raises(mikro.GrantError, match="closed"):
        provide()


def test_every_document_names_its_operation_type() -> None:
    assert operation("GetSample").kind == "query"
    assert operation("CreateSample").is_mutation
    assert mikro.graphql.operation_type("# c\n mutation X { a }") == "mutation"
    assert mikro.graphql.operation_type("{ me { id } }") == "query"


@pytest.mark.anyio
async def test_no_answer_within_timeout_is_a_timeout_error(scripted: ScriptedServer) -> None:
    scripted.script.append(Stall())
    async with session(scripted.url, timeout=0.5) as m:
        with anyio.fail_after(10):
            with pytest.raises(mikro.TimeoutError) as info:
                await m.me()
    assert isinstance(info.value, TimeoutError)  # the builtin, too
    # The server may still be working on it: a slow answer is not retried.
    assert len(scripted.seen) == 1


SAMPLE = {"id": "4", "name": "s", "createdAt": "2024-01-01T00:00:00Z", "creator": OK["data"]["me"]}


@pytest.mark.anyio
async def test_a_page_with_errors_raises_them_and_extensions_are_no_error(scripted: ScriptedServer) -> None:
    # A list's page is validated straight from the answer's bytes; an answer with errors beside its
    # data must still raise them, and one with extensions is still a page.
    forbidden = {"message": "no", "path": ["samples", 0], "extensions": {"code": "FORBIDDEN"}}
    scripted.script.extend(
        [
            Reply(200, {"data": {"samples": [SAMPLE]}, "errors": [forbidden]}),
            Reply(503, "busy"),
            Reply(200, {"data": {"samples": [SAMPLE]}, "extensions": {"tracing": 1}}),
        ]
    )
    async with session(scripted.url) as m:
        with pytest.raises(mikro.PermissionDeniedError):
            await m.list_samples()
        (sample,) = await m.list_samples()
        assert sample.name == "s" and sample.creator.username == "u"
        with pytest.raises(mikro.NotFetchedError):
            _ = sample.representations
    assert len(scripted.seen) == 3


@pytest.mark.anyio
async def test_a_page_the_models_refuse_is_a_validation_error(scripted: ScriptedServer) -> None:
    scripted.script.append(Reply(200, {"data": {"samples": [{**SAMPLE, "createdAt": "yesterday"}]}}))
    async with session(scripted.url) as m:
        with pytest.raises(pydantic.ValidationError, match=r"createdAt"):
            await m.list_samples()


@pytest.mark.anyio
async def test_a_connection_the_server_dropped_while_idle_is_not_used_again(
    proxy: ScriptedServer, alice_token: str
) -> None:
    # The pool asks each idle connection's socket whether its server has closed it (mikro keeps that
    # socket at hand, issue 17). Answered wrongly, the next request would go out on the dead connection
    # and fail: retries=0 leaves nothing to paper over it.
    proxy.script.append(Forward(then_close=True))
    async with session(proxy.url, token=alice_token, retries=0) as m:
        before = await m.me()
        await anyio.to_thread.run_sync(proxy.dropped.wait, 10)
        after = await m.me()
        again = await m.me()
    assert before.username == after.username == again.username
    first, second, third = (seen.peer for seen in proxy.seen)
    assert second != first  # a fresh connection...
    assert third == second  # ...kept alive as before


@pytest.mark.anyio
async def test_requests_share_at_most_max_connections_kept_alive(
    proxy: ScriptedServer, alice_token: str
) -> None:
    # mikro splits its pool into several small ones (issue 17): together they still open no more than
    # max_connections, and keep them alive for the requests that follow.
    async with session(proxy.url, token=alice_token, max_connections=6) as m:
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(m.me)
        opened = {seen.peer for seen in proxy.seen}
        for _ in range(6):
            await m.me()
    assert len(proxy.seen) == 36
    assert 1 <= len(opened) <= 6
    assert {seen.peer for seen in proxy.seen} == opened


@pytest.mark.anyio
async def test_a_proxy_named_in_the_environment_is_used(
    proxy: ScriptedServer, mikro_server: Any, alice_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mikro hands httpx a transport of its own unless the environment names a proxy: then httpx's
    # routing through it stays as it was.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/graphql"))
    async with session(mikro_server.url, token=alice_token) as m:
        me = await m.me()
    assert me.username.startswith("alice")
    assert len(proxy.seen) == 1


@pytest.mark.anyio
async def test_a_get_answered_with_errors_raises_them(scripted: ScriptedServer) -> None:
    # A get's object is validated straight from the answer's bytes too (issue 17); errors beside its
    # data still raise, extensions do not, and a refused object is pydantic's validation error.
    forbidden = {"message": "no", "path": ["sample"], "extensions": {"code": "FORBIDDEN"}}
    scripted.script.extend(
        [
            Reply(200, {"data": {"sample": SAMPLE}, "errors": [forbidden]}),
            Reply(200, {"data": {"sample": SAMPLE}, "extensions": {"tracing": 1}}),
            Reply(200, {"data": {"sample": {**SAMPLE, "createdAt": "yesterday"}}}),
        ]
    )
    async with session(scripted.url) as m:
        with pytest.raises(mikro.PermissionDeniedError):
            await m.get_sample("4")
        sample = await m.get_sample("4")
        assert sample.name == "s" and sample.creator.username == "u"
        with pytest.raises(pydantic.ValidationError, match=r"createdAt"):
            await m.get_sample("4")
