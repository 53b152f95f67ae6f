"""Threads, sockets, Ctrl-C, deadlocks and interpreter exit of blocking sessions (real server and sockets)."""

from __future__ import annotations

import _thread
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

import mikro
import mikro.sync

from ._slow_proxy import SlowProxy
from .conftest import open_fds, portal_threads


def settled(condition: Callable[[], bool], within: float = 10.0) -> bool:
    """Whether ``condition`` holds, waiting up to ``within`` s for asynchronous teardown (peer closes)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow
@pytest.mark.timeout(900)  # 1000 round trips to a server sharing 2 cores with the rest of the suite
def test_a_thousand_calls_leave_no_thread_or_socket_behind(
    mikro_server: Any, sync_token: str, portal_backend: str
) -> None:
    threads, fds = threading.active_count(), open_fds()
    with mikro.sync.connect(mikro_server.url, token=sync_token, backend=portal_backend) as m:
        assert len(portal_threads()) == 1  # one thread per session, whatever the number of calls
        names = {m.me().username for _ in range(1000)}
        assert len(names) == 1
        assert len(portal_threads()) == 1
    assert settled(lambda: threading.active_count() <= threads), threading.enumerate()
    assert settled(lambda: open_fds() <= fds), (fds, open_fds())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_hundred_connect_disconnect_cycles_leave_nothing_behind(
    mikro_server: Any, sync_token: str, portal_backend: str
) -> None:
    threads, fds = threading.active_count(), open_fds()
    for i in range(100):
        app = mikro.MikroApp(mikro_server.url, token=sync_token, backend=portal_backend)
        app.connect()
        if i % 10 == 0:
            assert mikro.me().username.startswith("sync-")
        app.disconnect()
        assert not app.connected
    assert portal_threads() == []
    assert settled(lambda: threading.active_count() <= threads), threading.enumerate()
    assert settled(lambda: open_fds() <= fds), (fds, open_fds())


def test_forgetting_disconnect_does_not_hang_interpreter_exit(
    mikro_server: Any, sync_token: str, portal_backend: str
) -> None:
    # The session's loop (and the worker threads it started) must be closed at exit, not frozen mid-flight.
    script = textwrap.dedent(
        f"""
        import time, anyio, mikro
        app = mikro.MikroApp(backend={portal_backend!r})
        session = app.connect()
        print(mikro.me().username, flush=True)
        session.run(anyio.to_thread.run_sync, time.sleep, 0)  # the loop has started a worker thread
        # no app.disconnect()
        """
    )
    env = {**os.environ, "MIKRO_URL": mikro_server.url, "MIKRO_TOKEN": sync_token}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sync-")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def send_sigint_to_the_main_thread() -> None:
    # What Ctrl-C in a terminal (or a Jupyter interrupt) does: a real signal, which interrupts a blocked
    # lock wait in the main thread at once.
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


CTRL_C = {
    "sigint": send_sigint_to_the_main_thread,
    # Sends no signal, so a blocked wait only sees it when it wakes up (IDEs and debuggers press Ctrl-C so).
    "interrupt_main": _thread.interrupt_main,
}


@pytest.mark.parametrize("press", sorted(CTRL_C))
def test_ctrl_c_cancels_the_call_in_flight_and_the_session_goes_on(
    mikro_server: Any, sync_token: str, portal_backend: str, press: str
) -> None:
    assert threading.current_thread() is threading.main_thread()  # where Python delivers KeyboardInterrupt
    with (
        SlowProxy(mikro_server.url) as proxy,
        mikro.sync.connect(proxy.url, token=sync_token, backend=portal_backend) as m,
    ):
        assert m.me().username.startswith("sync-")
        proxy.hold.set()

        def press_ctrl_c_once_the_server_has_the_request() -> None:
            if proxy.arrived.wait(30):
                CTRL_C[press]()

        presser = threading.Thread(target=press_ctrl_c_once_the_server_has_the_request)
        presser.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                m.list_samples()
            # the call gave up while the server still held the request: it did not wait for the answer
            assert proxy.answered_while_held == 0 and not proxy.release.is_set()
        finally:
            presser.join()
            proxy.hold.clear()
            proxy.release.set()

        assert m.me().username.startswith("sync-")
        assert isinstance(m.list_samples(limit=1), list)


def test_a_sync_call_from_the_sessions_own_loop_raises_instead_of_deadlocking(
    session: mikro.sync.SyncMikro,
) -> None:
    async def callback_running_on_the_session_loop() -> Any:
        return session.me()

    with pytest.raises(mikro.DeadlockError, match="own event loop"):
        session.run(callback_running_on_the_session_loop)

    async def the_right_way() -> str:
        return (await mikro.ame()).username

    assert session.run(the_right_way) == session.me().username


def test_closing_the_session_from_another_thread_ends_a_call_in_flight_with_an_error(
    mikro_server: Any, sync_token: str, portal_backend: str
) -> None:
    with SlowProxy(mikro_server.url) as proxy:
        m = mikro.sync.connect(proxy.url, token=sync_token, backend=portal_backend)
        assert m.me().username.startswith("sync-")
        proxy.hold.set()
        closer = threading.Thread(target=lambda: proxy.arrived.wait(30) and m.close())
        closer.start()
        try:
            with pytest.raises(mikro.NotConnectedError, match="closed while this call was running"):
                m.list_samples()
            closer.join(60)
            assert not closer.is_alive() and m.closed
            assert proxy.answered_while_held == 0  # the call was cut off, not answered
        finally:
            proxy.release.set()
            closer.join()
            m.close()
    assert portal_threads() == []


def test_each_session_is_the_current_one_on_its_own_loop(
    mikro_server: Any, sync_token: str, portal_backend: str
) -> None:
    other_token = mikro_server.add_user("sync-other")

    async def whoami() -> str:
        return (await mikro.ame()).username

    with (
        mikro.sync.connect(mikro_server.url, token=sync_token, backend=portal_backend) as first,
        mikro.sync.connect(mikro_server.url, token=other_token, backend=portal_backend) as second,
    ):
        for _ in range(3):  # set once per session, still there for every later call
            assert first.run(whoami) == first.me().username
            assert second.run(whoami) == second.me().username
        assert first.me().username != second.me().username


@pytest.mark.parametrize("caller_loop", ["asyncio", "trio"])
def test_works_where_the_callers_thread_already_runs_an_event_loop(
    mikro_server: Any, sync_token: str, portal_backend: str, caller_loop: str
) -> None:
    # Jupyter runs an asyncio loop in the main thread; blocking calls made from a cell block that loop but
    # must work, because the session's loop has its own thread.
    async def notebook_cell() -> tuple[str, int]:
        with mikro.sync.connect(mikro_server.url, token=sync_token, backend=portal_backend) as m:
            sample = m.create_sample("from-a-notebook")
            return m.get_sample(sample.id).name, len(list(m.iter_samples(ids=[sample.id])))

    result = asyncio.run(notebook_cell()) if caller_loop == "asyncio" else trio.run(notebook_cell)
    assert result == ("from-a-notebook", 1)


def test_a_closed_session_says_so(mikro_server: Any, sync_token: str, portal_backend: str) -> None:
    m = mikro.sync.connect(mikro_server.url, token=sync_token, backend=portal_backend)
    m.close()
    m.close()  # idempotent
    assert m.closed and portal_threads() == []
    with pytest.raises(mikro.NotConnectedError, match="closed"):
        m.me()
