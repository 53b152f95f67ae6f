"""One event loop thread per sync session: an anyio blocking portal, safe for Ctrl-C and interpreter exit.

Every blocking call goes through :meth:`PortalRunner.call`: the coroutine runs as a task in the portal's
loop and the caller's thread waits on its future. The wait polls (instead of one long ``Future.result()``)
so that a ``KeyboardInterrupt`` - also one raised with ``_thread.interrupt_main()``, which does not wake a
thread blocked on a lock - reaches the caller promptly; the interrupted call is then cancelled inside the
loop, which keeps the session usable.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from mikro._exceptions import DeadlockError, NotConnectedError

__all__ = ["Backend", "PortalContextManager", "PortalRunner"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Backend = Literal["asyncio", "trio"]

#: How often a waiting caller wakes up to let a pending KeyboardInterrupt through.
_POLL_SECONDS = 0.05
#: How long a Ctrl-C'd call may take to unwind inside the loop before the caller stops waiting for it.
_CANCEL_GRACE_SECONDS = 5.0
#: How long interpreter exit waits for a forgotten session to close cleanly.
_EXIT_GRACE_SECONDS = 5.0


def _wait(future: concurrent.futures.Future[T]) -> T:
    # Not `future.result(timeout)` in a loop: a call that raises a TimeoutError would look like a timeout.
    while not future.done():
        concurrent.futures.wait((future,), timeout=_POLL_SECONDS)
    return future.result()


def _wait_event(event: threading.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        event.wait(_POLL_SECONDS)


class PortalRunner:
    """Owns one blocking portal (one event loop in its own daemon thread) and runs calls on it."""

    def __init__(self, backend: Backend = "asyncio", backend_options: dict[str, Any] | None = None) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self.backend: Backend = backend
        self._portal_cm = start_blocking_portal(backend, backend_options, name=f"mikro-sync-{backend}")
        self._portal: BlockingPortal = self._portal_cm.__enter__()
        self._closed = False
        self.loop_thread_id: int = _wait(self._spawn(_get_ident))
        #: Entered around every task run on the loop (the session sets the current-client context var).
        self.task_context: Callable[[], AbstractContextManager[Any]] | None = None
        # Context managers to exit cleanly (newest first) before the loop stops, e.g. the async session.
        self._owned: list[PortalContextManager[Any]] = []
        _live_runners.add(self)
        _ensure_exit_hook()

    @property
    def closed(self) -> bool:
        return self._closed

    def check_caller(self) -> None:
        """Refuse calls that could never finish: from the loop thread itself, or after close."""
        if self._closed:
            raise NotConnectedError(
                "this sync mikro session is closed; open a new one with mikro.sync.connect()"
            )
        if threading.get_ident() == self.loop_thread_id:
            raise DeadlockError(
                "a blocking mikro call was made from inside the sync session's own event loop (e.g. from "
                "an async callback running on it); it would wait for itself forever. In async code use "
                "the async session (`await m.async_session.get_...(...)`) or `await mikro.aget_...(...)`."
            )

    def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await func(*args)`` on the loop and return its result in the caller's thread.

        The call's exception is re-raised here with its original type. A KeyboardInterrupt while waiting
        cancels the call inside the loop, waits (bounded) for it to unwind, and propagates.
        """
        self.check_caller()
        unwound = threading.Event()

        async def task() -> T:
            try:
                return await self._in_task_context(func, *args)
            finally:
                unwound.set()

        future = self._spawn(task)
        try:
            return _wait(future)
        except KeyboardInterrupt:
            if future.cancel():
                _wait_event(unwound, _CANCEL_GRACE_SECONDS)
            raise

    def start(self, func: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start ``func`` as a task on the loop without waiting; cancelling the future cancels the task."""
        self.check_caller()
        return self._spawn(self._in_task_context, func)

    def _spawn(self, func: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        if not _runs_trio():
            return self._portal.start_task_soon(func, *args)
        # trio refuses to be entered from any thread that itself runs trio ("this is a blocking function;
        # call it from a thread"), even though the portal's loop is another one: spawn from a helper.
        spawned: concurrent.futures.Future[concurrent.futures.Future[T]] = concurrent.futures.Future()

        def spawn() -> None:
            try:
                spawned.set_result(self._portal.start_task_soon(func, *args))
            except BaseException as exc:
                spawned.set_exception(exc)

        helper = threading.Thread(target=spawn, name="mikro-sync-spawn", daemon=True)
        helper.start()
        helper.join()
        return spawned.result()

    async def _in_task_context(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self.task_context is None:
            return await func(*args)
        with self.task_context():
            return await func(*args)

    def wrap_async_context_manager(
        self, make_cm: Callable[[], AbstractAsyncContextManager[T]], *, owned: bool = False
    ) -> PortalContextManager[T]:
        """A sync context manager running the async cm ``make_cm()`` on the loop (created there too).

        ``owned`` ones are exited by :meth:`close` if still entered.
        """
        wrapped = PortalContextManager(self, make_cm)
        if owned:
            self._owned.append(wrapped)
        return wrapped

    def close(self, timeout: float | None = None) -> None:
        """Exit the owned context managers, stop the loop (cancelling what still runs) and join its thread.

        With ``timeout``, each step waits at most that long, so a stuck cleanup cannot hang the caller.
        """
        if self._closed:
            return
        self.check_caller()
        try:
            while self._owned:
                self._owned.pop().exit(timeout=timeout)
        finally:
            self._stop(timeout)

    def _stop(self, timeout: float | None) -> None:
        self._closed = True
        _live_runners.discard(self)
        thread = next((t for t in threading.enumerate() if t.ident == self.loop_thread_id), None)
        with contextlib.suppress(RuntimeError):  # the loop already ended
            _wait(self._spawn(self._portal.stop, True))
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return  # a daemon thread stuck in cleanup: do not hang the caller (or interpreter exit)
        self._portal_cm.__exit__(None, None, None)


class PortalContextManager(Generic[T_co]):
    """A sync context manager over an async one, entered and exited by ONE task on the portal's loop.

    Like ``BlockingPortal.wrap_async_context_manager`` (the Starlette TestClient pattern), but the
    waits are interruptible: Ctrl-C while entering or exiting cancels that task instead of leaving it
    half-entered.
    """

    def __init__(
        self, runner: PortalRunner, make_cm: Callable[[], AbstractAsyncContextManager[T_co]]
    ) -> None:
        self._runner = runner
        self._make_cm = make_cm
        self._entered: concurrent.futures.Future[T_co] = concurrent.futures.Future()
        self._task: concurrent.futures.Future[bool | None] | None = None
        self._exit_event: anyio.Event | None = None
        self._exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None] = (
            None,
            None,
            None,
        )

    async def _run(self) -> bool | None:
        self._exit_event = anyio.Event()
        try:
            async_cm = self._make_cm()
            value = await async_cm.__aenter__()
        except BaseException as exc:
            self._entered.set_exception(exc)
            raise
        self._entered.set_result(value)
        try:
            await self._exit_event.wait()
        except BaseException as exc:
            # Cancelled from outside (Ctrl-C, session close): exit the async cm with that cancellation.
            if await async_cm.__aexit__(type(exc), exc, exc.__traceback__):
                return True
            raise
        return bool(await async_cm.__aexit__(*self._exc_info))

    def __enter__(self) -> T_co:
        self._task = self._runner.start(self._run)
        try:
            return _wait(self._entered)
        except KeyboardInterrupt:
            self._task.cancel()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.exit(exc_type, exc, tb)

    def exit(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
        *,
        timeout: float | None = None,
    ) -> bool:
        """Run the async cm's ``__aexit__`` on the loop and wait for it (at most ``timeout`` seconds).

        Returns whether ``__aexit__`` suppressed the exception; its own exception is re-raised here.
        """
        task, event = self._task, self._exit_event
        if task is None or event is None or task.done() or self._runner.closed:
            return False
        self._exc_info = (exc_type, exc, tb)
        self._runner.check_caller()
        try:
            self._runner.call(_set_event, event)
        except RuntimeError:
            return False  # the loop is gone; its cancellation already ran __aexit__
        try:
            if timeout is None:
                return bool(_wait(task))
            done, _ = concurrent.futures.wait((task,), timeout=timeout)
            return bool(task.result()) if task in done else False
        except KeyboardInterrupt:
            task.cancel()
            raise
        except concurrent.futures.CancelledError:
            return False


async def _set_event(event: anyio.Event) -> None:
    event.set()


async def _get_ident() -> int:
    return threading.get_ident()


def _runs_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


_live_runners: weakref.WeakSet[PortalRunner] = weakref.WeakSet()
_hook_installed = False
_hook_lock = threading.Lock()


def _ensure_exit_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        _hook_installed = True
    # A session the user forgot to close runs in a daemon thread: at exit it would be frozen mid-flight,
    # its connections never closed (and anyio's portal generator complains during finalisation). Close it
    # in threading's exit hook: that runs before non-daemon threads are joined and before
    # concurrent.futures shuts down the executors the loop may still use (it registered earlier, and
    # these hooks run newest first); plain atexit runs after both.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_close_all_at_exit)
            return
        except RuntimeError:
            pass  # the interpreter is already shutting down
    atexit.register(_close_all_at_exit)


def _close_all_at_exit() -> None:
    for runner in list(_live_runners):
        # Best effort: nothing useful can be done with an error while the interpreter exits.
        with contextlib.suppress(Exception):
            runner.close(timeout=_EXIT_GRACE_SECONDS)
