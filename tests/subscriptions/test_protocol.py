"""The graphql-transport-ws engine against a scripted peer: every edge the reference server never shows."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import pytest

import mikro
from mikro.graphql._subscriptions import (
    EventStream,
    ReconnectPolicy,
    SubscriptionClient,
    SubscriptionSettings,
)
from tests.fixtures_servers import free_port
from tests.subscriptions._scripted_server import DOCUMENT, FIELD, ScriptedServer

pytestmark = pytest.mark.anyio

FAST = SubscriptionSettings(
    ack_timeout=2.0,
    ping_interval=None,
    idle_timeout=0.2,
    reconnect=ReconnectPolicy(max_attempts=3, initial=0.01, maximum=0.05, jitter=0.01),
)


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _ticks(client: SubscriptionClient, *, buffer: int | None = None) -> EventStream[dict[str, Any]]:
    return client.subscribe(DOCUMENT, field=FIELD, parse=dict, buffer=buffer)


async def _collect(stream: EventStream[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    out = []
    with anyio.fail_after(20):
        async for event in stream:
            out.append(event)
            if len(out) == count:
                break
    return out


async def _eventually(predicate: Any, what: str) -> None:
    with anyio.fail_after(20):
        while not predicate():
            await anyio.sleep(0.02)


async def test_events_arrive_in_order_and_leaving_sends_complete(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    async with SubscriptionClient(scripted_server.url(tag, "replay"), settings=FAST) as client:
        async with _ticks(client) as events:
            received = await _collect(events, 10)
        assert [e["cursor"] for e in received] == list(range(1, 11))
        assert events.cursor == 10
        stats = scripted_server.stats(tag)
        await _eventually(lambda: stats.completes, "complete")
        assert stats.completes == [stats.subscribes[0]["id"]]


async def test_connection_init_carries_the_token(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    url = scripted_server.url(tag, "token")
    async with SubscriptionClient(url, token="s3cret", settings=FAST) as client, _ticks(client) as events:
        [event] = await _collect(events, 1)
    assert json.loads(event["id"]) == {"token": "s3cret"}


async def test_two_subscriptions_share_one_socket_with_distinct_ids(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    async with SubscriptionClient(scripted_server.url(tag, "replay"), settings=FAST) as client:
        async with _ticks(client) as first, _ticks(client) as second:
            assert [e["cursor"] for e in await _collect(first, 10)] == list(range(1, 11))
            assert [e["cursor"] for e in await _collect(second, 10)] == list(range(1, 11))
        assert client.connections_opened == 1
    stats = scripted_server.stats(tag)
    assert stats.connections == 1
    ids = [message["id"] for message in stats.subscribes]
    assert len(ids) == 2 and len(set(ids)) == 2


async def test_a_slow_consumer_pauses_and_replays_without_stalling_the_others(
    scripted_server: ScriptedServer,
) -> None:
    tag = _tag()
    async with (
        SubscriptionClient(scripted_server.url(tag, "replay"), settings=FAST) as client,
        _ticks(client, buffer=3) as slow,
        _ticks(client, buffer=20) as fast,
    ):
        # The slow one is not read at all, yet the fast one gets everything.
        assert [e["cursor"] for e in await _collect(fast, 10)] == list(range(1, 11))
        assert slow.overflows >= 1
        # Reading the slow one now yields every event once, in order: paused, then replayed.
        assert [e["cursor"] for e in await _collect(slow, 10)] == list(range(1, 11))
    resumed_after = [m["payload"]["variables"]["after"] for m in scripted_server.stats(tag).subscribes]
    assert 3 in resumed_after


async def test_a_dropped_socket_reconnects_and_resumes_after_the_last_cursor(
    scripted_server: ScriptedServer,
) -> None:
    tag = _tag()
    # The peer drops the socket (close 1011) after every third event it sends.
    async with SubscriptionClient(scripted_server.url(tag, "flaky", 3), settings=FAST) as client:
        async with _ticks(client) as events:
            received = await _collect(events, 10)
        assert client.connections_opened == 4
    assert [e["cursor"] for e in received] == list(range(1, 11))
    afters = [m["payload"]["variables"]["after"] for m in scripted_server.stats(tag).subscribes]
    assert afters == [None, 3, 6, 9]


async def test_an_event_larger_than_a_socket_read_arrives_whole(scripted_server: ScriptedServer) -> None:
    size = 3 * 1024 * 1024
    async with (
        SubscriptionClient(scripted_server.url(_tag(), "big", size), settings=FAST) as client,
        _ticks(client) as events,
    ):
        [event] = await _collect(events, 1)
    assert event["id"] == "x" * size


async def test_a_drop_before_any_event_is_reported_as_a_gap(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    async with (
        SubscriptionClient(scripted_server.url(tag, "dropfirst"), settings=FAST) as client,
        _ticks(client) as events,
    ):
        received = await _collect(events, 11)
    # Without a cursor there is nothing to replay from: the consumer is told events may be missing.
    assert received[0] == {"cursor": 0, "kind": "GAP", "id": None}
    assert [e["cursor"] for e in received[1:]] == list(range(1, 11))


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (4400, mikro.ProtocolError),
        (4401, mikro.AuthenticationError),
        (4403, mikro.AuthenticationError),
        (4408, mikro.TimeoutError),
        (4409, mikro.ProtocolError),
        (4429, mikro.ProtocolError),
    ],
)
async def test_close_codes_raise_typed_errors_without_retrying(
    scripted_server: ScriptedServer, code: int, error: type[Exception]
) -> None:
    tag = _tag()
    async with SubscriptionClient(scripted_server.url(tag, "close", code), settings=FAST) as client:
        with pytest.raises(error) as caught:
            async with _ticks(client):
                pytest.fail("the subscription started although the server closed the socket")
    if isinstance(caught.value, mikro.ProtocolError):
        assert caught.value.close_code == code
    assert str(code) in str(caught.value)
    assert scripted_server.stats(tag).connections == 1


async def test_a_refused_upgrade_is_an_authentication_error(scripted_server: ScriptedServer) -> None:
    async with SubscriptionClient(scripted_server.url(_tag(), "refuse"), settings=FAST) as client:
        with pytest.raises(mikro.AuthenticationError, match="HTTP 403"):
            async with _ticks(client):
                pass


async def test_a_missing_ack_times_out_and_the_client_gives_up(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    settings = SubscriptionSettings(
        ack_timeout=0.2, reconnect=ReconnectPolicy(max_attempts=2, initial=0.01, maximum=0.02, jitter=0.01)
    )
    async with SubscriptionClient(scripted_server.url(tag, "noack"), settings=settings) as client:
        with pytest.raises(mikro.ConnectError, match="gave up") as caught:
            async with _ticks(client):
                pass
    assert isinstance(caught.value.__cause__, mikro.TimeoutError)
    assert scripted_server.stats(tag).connections == 2


async def test_an_unreachable_server_gives_up_with_connect_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/graphql"
    async with SubscriptionClient(url, settings=FAST) as client:
        with pytest.raises(mikro.ConnectError, match="after 3 attempts"):
            async with _ticks(client):
                pass


async def test_a_socket_without_pongs_is_dead_and_replaced(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    settings = SubscriptionSettings(
        ping_interval=0.1,
        pong_timeout=0.2,
        reconnect=ReconnectPolicy(max_attempts=5, initial=0.01, maximum=0.02, jitter=0.01),
    )
    async with (
        SubscriptionClient(scripted_server.url(tag, "nopong"), settings=settings) as client,
        _ticks(client),
    ):
        await _eventually(lambda: client.connections_opened >= 2, "a second connection")
        # Every connection carried the subscription again.
        await _eventually(lambda: len(scripted_server.stats(tag).subscribes) >= 2, "a resubscription")


async def test_the_client_answers_server_pings(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    async with (
        SubscriptionClient(scripted_server.url(tag, "pinger"), settings=FAST) as client,
        _ticks(client) as events,
    ):
        [event] = await _collect(events, 1)
    # The peer sends the event only after the pong to its ping.
    assert event["kind"] == "PONGS_1"


async def test_an_error_message_raises_the_typed_graphql_error(scripted_server: ScriptedServer) -> None:
    async with SubscriptionClient(scripted_server.url(_tag(), "error"), settings=FAST) as client:
        with pytest.raises(mikro.NotFoundError, match="no such dataset"):
            async with _ticks(client) as events:
                await _collect(events, 1)


async def test_a_server_complete_ends_the_iteration(scripted_server: ScriptedServer) -> None:
    async with (
        SubscriptionClient(scripted_server.url(_tag(), "complete"), settings=FAST) as client,
        _ticks(client) as events,
    ):
        with anyio.fail_after(20):
            received = [event async for event in events]
    assert [e["cursor"] for e in received] == [1, 2]


async def test_a_message_that_is_not_json_is_a_protocol_error(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    async with SubscriptionClient(scripted_server.url(tag, "garbage"), settings=FAST) as client:
        with pytest.raises(mikro.ProtocolError, match="not JSON"):
            async with _ticks(client) as events:
                await _collect(events, 1)
    stats = scripted_server.stats(tag)
    await _eventually(lambda: stats.client_close_codes, "the client's close")
    assert stats.client_close_codes == [4400]


async def test_the_socket_closes_when_idle_and_reopens_on_demand(scripted_server: ScriptedServer) -> None:
    tag = _tag()
    stats = scripted_server.stats(tag)
    async with SubscriptionClient(scripted_server.url(tag, "replay"), settings=FAST) as client:
        async with _ticks(client) as events:
            await _collect(events, 1)
        await _eventually(lambda: stats.client_close_codes == [1000], "the idle close")
        assert not client.connected
        async with _ticks(client) as events:
            await _collect(events, 1)
        assert client.connections_opened == 2


async def test_closing_the_client_ends_iterations_in_other_tasks(scripted_server: ScriptedServer) -> None:
    received: list[dict[str, Any]] = []
    done = anyio.Event()

    async def consume(client: SubscriptionClient) -> None:
        async with _ticks(client) as events:
            async for event in events:
                received.append(event)
        done.set()

    url = scripted_server.url(_tag(), "replay")
    async with anyio.create_task_group() as tg:
        async with SubscriptionClient(url, settings=FAST) as client:
            tg.start_soon(consume, client)
            await _eventually(lambda: len(received) == 10, "all events")
        with anyio.fail_after(20):
            await done.wait()
    assert len(received) == 10


async def test_leaving_the_block_ends_an_iteration_in_another_task(scripted_server: ScriptedServer) -> None:
    finished = anyio.Event()

    async def consume(events: EventStream[dict[str, Any]]) -> None:
        async for _ in events:
            pass
        finished.set()

    url = scripted_server.url(_tag(), "complete")
    async with SubscriptionClient(url, settings=FAST) as client, anyio.create_task_group() as tg:
        async with _ticks(client, buffer=1) as events:
            tg.start_soon(consume, events)
            await anyio.sleep(0)
        with anyio.fail_after(20):
            await finished.wait()
