"""Errors a user meets, from the real reference server, as mikro's typed exceptions."""

from __future__ import annotations

from typing import Any

import pytest

import mikro
from tests.client._data import make_representation
from tests.client.conftest import unique

pytestmark = pytest.mark.anyio


async def test_unknown_id_is_not_found(m: mikro.Mikro) -> None:
    for get in (m.get_sample, m.get_representation, m.get_roi, m.get_dataset, m.get_table):
        with pytest.raises(mikro.NotFoundError) as info:
            await get("987654321")
        assert info.value.code == "NOT_FOUND"
    with pytest.raises(mikro.NotFoundError):
        await m.delete_experiment("987654321")


async def test_bad_token_is_an_authentication_error(mikro_server: Any) -> None:
    async with mikro.connect(mikro_server.url, token="not-a-token") as m:
        with pytest.raises(mikro.AuthenticationError) as info:
            await m.me()
        # A refused token is not retried: the answer would not change.
        assert info.value.code == "UNAUTHENTICATED"


async def test_another_users_objects_are_not_found(m: mikro.Mikro, mikro_server: Any, bob_token: str) -> None:
    sample = await m.create_sample(unique("private"))
    rep = await make_representation(m, unique("private-img"))
    async with mikro.connect(mikro_server.url, token=bob_token) as bob:
        with pytest.raises(mikro.NotFoundError):
            await bob.get_sample(sample.id)
        with pytest.raises(mikro.NotFoundError):
            await bob.update_sample(sample, name="mine now")
        with pytest.raises(mikro.NotFoundError):
            await bob.delete_representation(rep.id)
        with pytest.raises(mikro.NotFoundError):
            await bob.request_access(rep.store.id)
        # Another user's objects answer as if they did not exist: ids reveal nothing of other users.
        # A grant provider in a worker thread reports it as a GrantError caused by the refusal.
        provide = bob.grant_provider(rep.store.id)
        import anyio

        with pytest.raises(mikro.GrantError) as info:
            await anyio.to_thread.run_sync(provide)
        assert isinstance(info.value.__cause__, mikro.NotFoundError)
        assert sample.id not in [s.id for s in await bob.list_samples(ids=[sample])]
    assert (await m.get_sample(sample)).name == sample.name  # untouched


async def test_bad_input_is_a_validation_error(m: mikro.Mikro) -> None:
    rep = await make_representation(m, unique("img"))
    with pytest.raises(mikro.ValidationError):
        await m.create_roi(rep, "POINT", [[1, 2, 3]])  # not a 5-D point
    with pytest.raises(mikro.ValidationError):
        await m.list_samples(limit=-1)
    with pytest.raises(mikro.ValidationError):
        await m.create_sample("x" * 100_000)
    assert await m.list_rois(representation=rep) == []  # nothing written


async def test_invalid_document_is_a_validation_error(m: mikro.Mikro) -> None:
    with pytest.raises(mikro.ValidationError) as info:
        await m.execute("query { me { noSuchField } }")
    assert "noSuchField" in str(info.value)


async def test_wrong_enum_value_is_rejected_before_sending(m: mikro.Mikro) -> None:
    with pytest.raises(mikro.ValidationError, match=r"kind must be one of POINT, .*SQUIGGLE"):
        await m.list_rois(kind="SQUIGGLE")
