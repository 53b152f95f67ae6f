"""The session's lifecycle: structured concurrency, cancellation, sockets, the current-session functions."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import numpy as np
import pytest

import mikro
from tests.client._data import make_representation
from tests.client._scripted import ScriptedServer, Stall
from tests.client.conftest import unique
from tests.subscriptions._sockets import open_connections

pytestmark = pytest.mark.anyio


async def test_session_closes_every_socket(mikro_server: Any, alice_token: str) -> None:
    assert open_connections(mikro_server.port) == 0
    async with mikro.connect(mikro_server.url, token=alice_token) as m:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(m.me)
        # and the blocking client used by worker threads
        rep_store = (await m.request_upload()).store_id
        provide = m.grant_provider(rep_store, write=True)
        assert (await anyio.to_thread.run_sync(provide)).write is True
        assert open_connections(mikro_server.port) >= 2  # kept alive in the pools
    assert open_connections(mikro_server.port) == 0


async def test_body_error_propagates_and_session_closes(mikro_server: Any, alice_token: str) -> None:
    session = mikro.connect(mikro_server.url, token=alice_token)
    with pytest.raises(KeyError, match="boom"):
        async with session as m:
            await m.me()
            raise KeyError("boom")
    assert not session.is_open
    assert open_connections(mikro_server.port) == 0
    with pytest.raises(mikro.NotConnectedError, match="closed"):
        await session.me()
    with pytest.raises(mikro.MikroError, match="once"):
        async with session:
            pass


async def test_cancelled_body_closes_session(mikro_server: Any, alice_token: str) -> None:
    with anyio.move_on_after(30) as outer:
        with anyio.CancelScope() as scope:
            async with mikro.connect(mikro_server.url, token=alice_token) as m:
                await m.me()
                scope.cancel()
                await anyio.sleep(5)
    assert scope.cancelled_caught and not outer.cancelled_caught
    assert not m.is_open
    assert open_connections(mikro_server.port) == 0


async def test_background_task_ends_with_the_session(mikro_server: Any, alice_token: str) -> None:
    finished = anyio.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            finished.set()

    async with mikro.connect(mikro_server.url, token=alice_token) as m:
        m.task_group.start_soon(forever)
        await anyio.sleep(0)
    assert finished.is_set()


async def test_cancelling_an_inflight_query_keeps_session_usable(
    m: mikro.Mikro, proxy: ScriptedServer, alice_token: str
) -> None:
    sample = await m.create_sample(unique("s"))
    stall = Stall()
    proxy.script.append(stall)
    async with mikro.connect(proxy.url, token=alice_token, timeout=60) as via_proxy:
        with anyio.fail_after(10):  # "promptly": far below the 60 s request timeout
            with anyio.move_on_after(0.3) as scope:
                await via_proxy.get_sample(sample.id)
        assert scope.cancelled_caught
        assert len(proxy.seen) == 1  # it really was in flight
        got = await via_proxy.get_sample(sample.id)  # the next request goes through
        assert got.name == sample.name
        stall.release.set()
    assert open_connections(proxy.port) == 0


async def test_concurrent_queries_share_the_session(m: mikro.Mikro) -> None:
    samples = [await m.create_sample(unique("c")) for _ in range(6)]
    names: dict[str, str] = {}

    async def fetch(sample_id: str) -> None:
        names[sample_id] = (await m.get_sample(sample_id)).name

    async with anyio.create_task_group() as tg:
        for s in samples:
            tg.start_soon(fetch, s.id)
    assert names == {s.id: s.name for s in samples}


async def test_module_level_functions_use_the_current_session(
    mikro_server: Any, alice_token: str, bob_token: str
) -> None:
    with pytest.raises(mikro.NotConnectedError, match=r"async with mikro\.connect"):
        await mikro.aget_sample("1")
    async with mikro.connect(mikro_server.url, token=alice_token) as m:
        assert mikro.current_session() is m
        sample = await mikro.acreate_sample(unique("ctx"))
        assert (await mikro.aget_sample(sample.id)).name == sample.name
        assert [s.id async for s in mikro.aiter_samples(ids=[sample])] == [sample.id]
        rep = await mikro.acreate_representation(
            np.full((4, 6), 7, "uint8"), name=unique("ctx"), dims=("y", "x")
        )
        assert int(await mikro.acompute(rep.data.max())) == 7
        async with mikro.connect(mikro_server.url, token=bob_token) as bob:
            # the innermost session is current; it is another user
            assert (await mikro.ame()).username.startswith("bob-")
            assert mikro.current_session() is bob
        assert mikro.current_session() is m
        assert (await mikro.ame()).username.startswith("alice-")
        await mikro.adelete_sample(sample)
    with pytest.raises(mikro.NotConnectedError):
        mikro.current_session()


async def test_each_task_sees_its_own_session(mikro_server: Any, alice_token: str, bob_token: str) -> None:
    users: dict[str, str] = {}

    async def work(label: str, token: str) -> None:
        async with mikro.connect(mikro_server.url, token=token):
            await anyio.sleep(0.05)  # both sessions are open at once
            users[label] = (await mikro.ame()).username

    async with anyio.create_task_group() as tg:
        tg.start_soon(work, "a", alice_token)
        tg.start_soon(work, "b", bob_token)
    assert users["a"].startswith("alice-") and users["b"].startswith("bob-")


def test_every_operation_has_a_module_level_function() -> None:
    import inspect

    from mikro.api import Operations
    from mikro.api._file_operations import FileOperations
    from mikro.client._data import DataPlaneMixin
    from mikro.client._files import FilesMixin
    from mikro.client._watch import WatchMixin

    public = {
        n
        for cls in (Operations, DataPlaneMixin, WatchMixin, FilesMixin, FileOperations)
        for n, _ in inspect.getmembers(cls, inspect.isfunction)
        if not n.startswith("_")
    } - {"open_representation_data", "open_table_data"}  # sync, no I/O: used through rep.data
    functions = {n[1:] for n in mikro.__all__ if n.startswith("a") and n[1:] in public}
    assert public - functions == set(), "add these to mikro/_functions.py and mikro/__init__.py"
    signature = inspect.signature(mikro.alist_representations)
    assert "self" not in signature.parameters and "dataset" in signature.parameters
    assert mikro.aget_sample.__doc__ == mikro.Mikro.get_sample.__doc__


async def test_models_print_without_secrets(m: mikro.Mikro) -> None:
    grant = mikro.Grant.model_validate(
        {
            "storeId": "1",
            "uploadKind": "ZARR",
            "kind": "S3",
            "endpoint": "http://127.0.0.1:9000",
            "region": "us-east-1",
            "bucket": "b",
            "prefix": "zarr/x",
            "path": "s3://b/zarr/x",
            "write": True,
            "credentials": {
                "accessKeyId": "AKIAEXAMPLE",
                "secretAccessKey": "very-secret-key",
                "sessionToken": "very-secret-token",
                "expiration": "2030-01-01T00:00:00Z",
            },
            "expiresAt": "2030-01-01T00:00:00Z",
        }
    )
    for text in (repr(grant), str(grant), grant._repr_html_(), repr(grant.credentials)):
        assert "very-secret" not in text
    assert "zarr/x" in repr(grant)
    storage = grant.to_storage_grant()
    assert storage.secret_access_key == "very-secret-key" and storage.session_token == "very-secret-token"
    assert "very-secret" not in repr(storage)

    sample = await m.create_sample(unique("shown"), tags=["t"])
    html = sample._repr_html_()
    assert "<table>" in html and sample.name in html and "created_at" in html
    assert repr(sample).startswith("Sample(") and sample.name in repr(sample)
    assert alice_in(repr(sample))


def alice_in(text: str) -> bool:
    # relations print as a short reference, not as a full nested dump
    return "User(id=" in text and "username='alice-" in text


async def test_representation_data_needs_a_session() -> None:
    rep = mikro.Representation.model_validate(
        {
            "id": "1",
            "name": "x",
            "shape": [1],
            "dims": ["x"],
            "dtype": "uint8",
            "variety": "VOXEL",
            "store": {"id": "1", "bucket": "b", "key": "k", "path": "/p", "version": "3", "populated": True},
            "createdAt": "2024-01-01T00:00:00Z",
            "creator": {"id": "1", "username": "u", "isAdmin": False},
        }
    )
    with pytest.raises(mikro.NotConnectedError, match="not loaded through a mikro session"):
        rep.data  # noqa: B018


async def test_listed_models_and_their_copies_open_data_from_their_session(m: mikro.Mikro) -> None:
    sample = await m.create_sample(name=unique("listed-sample"))
    rep = await make_representation(m, unique("listed"), sample=sample)
    (listed,) = await m.list_representations(ids=[rep.id])
    copied = listed.model_copy()
    assert copied == listed and copied.data.shape == (2, 4, 5)
    assert int(await m.compute(copied.data.max())) == 2 * 4 * 5 - 1
    # a model built by hand knows no session: data says so (not an AttributeError)
    built = mikro.Representation.model_construct(**dict(listed))
    with pytest.raises(mikro.NotConnectedError, match="not loaded through a mikro session"):
        built.data  # noqa: B018


async def test_grant_provider_is_thread_safe(m: mikro.Mikro) -> None:
    store = (await m.request_upload()).store_id
    provide = m.grant_provider(store, write=True)
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        grant = provide()
        with lock:
            results.append(grant.store_id)

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(anyio.to_thread.run_sync, call)
    assert results == [store] * 6
