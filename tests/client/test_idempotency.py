"""A mutation whose answer was lost is retried with its key and acts once; without a key it is not retried."""

from __future__ import annotations

import pytest

import mikro
from tests.client._scripted import Forward, ScriptedServer
from tests.client.conftest import unique

pytestmark = pytest.mark.anyio


async def test_retried_mutation_with_key_creates_one_row(
    m: mikro.Mikro, proxy: ScriptedServer, alice_token: str
) -> None:
    name = unique("once")
    # The server executes the mutation, then the proxy loses the answer and says 503.
    proxy.script.extend([Forward(then_status=503), Forward(then_status=502)])
    async with mikro.connect(proxy.url, token=alice_token) as via_proxy:
        sample = await via_proxy.create_sample(name)
    assert sample.name == name
    assert len(proxy.seen) == 3
    keys = {s.headers.get("idempotency-key") for s in proxy.seen}
    assert len(keys) == 1 and None not in keys
    assert [s.id for s in await m.list_samples(name_contains=name)] == [sample.id]


async def test_mutation_without_key_is_not_repeated(
    m: mikro.Mikro, proxy: ScriptedServer, alice_token: str
) -> None:
    name = unique("raw")
    proxy.script.append(Forward(then_status=503))
    document = "mutation Create($name: String!) { createSample(input: {name: $name}) { id } }"
    async with mikro.connect(proxy.url, token=alice_token) as via_proxy:
        with pytest.raises(mikro.HTTPStatusError):
            await via_proxy.execute(document, {"name": name})
    assert len(proxy.seen) == 1
    # It did act once on the server; a blind retry would have made a second row.
    assert len(await m.list_samples(name_contains=name)) == 1


async def test_query_through_flaky_proxy_is_retried(
    m: mikro.Mikro, proxy: ScriptedServer, alice_token: str
) -> None:
    sample = await m.create_sample(unique("q"))
    proxy.script.extend([Forward(then_status=503), Forward(then_status=504)])
    async with mikro.connect(proxy.url, token=alice_token) as via_proxy:
        assert (await via_proxy.get_sample(sample)).name == sample.name
    assert len(proxy.seen) == 3
    assert all("idempotency-key" not in s.headers for s in proxy.seen)
