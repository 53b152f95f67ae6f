"""One event loop thread per sync session, safe for Ctrl-C and interpreter exit.

Every blocking call goes through :meth:`PortalRunner.call`: the caller hands the coroutine function to the
loop with ONE thread-safe callback (``loop.call_soon_threadsafe`` / ``TrioToken.run_sync_soon``) that
starts it as a native task of the loop, then blocks on a lock the task releases once it has unwound: one
wake-up of the loop and one of the caller per call, nothing else. On this kind of VM (idle vCPUs halt at
once) each cross-thread wake-up costs 50-150 µs, and code run right after one runs cold, so both the number
of hand-overs and the loop's work per call count:

* anyio's ``BlockingPortal.call`` makes one more round trip (``start_task_soon`` waits until the loop
  has spawned the task): it measured ~250-450 µs per call over the awaited server call here, against
  ~110-160 µs (asyncio) and ~200-230 µs (trio) for this runner. So the loop runs directly
  (``anyio.run`` in a daemon thread), not behind a portal.
* Calls are native tasks (``loop.create_task`` / a trio nursery), not an anyio task group's: anyio wraps
  each task it starts in a ``TaskHandle`` with a cancel scope and an event, ~50 µs per call when cold.
* The current session is set once in the loop's base context, which every task copies, instead of being
  set and reset around every call.

The caller's wait is a lock acquire with a timeout, in a loop. A real SIGINT (Ctrl-C in a terminal, a
Jupyter interrupt) interrupts that acquire at once on POSIX; the timeout also lets a KeyboardInterrupt
from ``_thread.interrupt_main()`` (which sends no signal) or on Windows (where lock waits are not
interruptible) through within ``_POLL_SECONDS``, and notices a loop thread that died. For a call shorter
than ``_POLL_SECONDS`` the timed wait costs the same as an untimed one (one futex wait either way). The
interrupted call is then cancelled inside the loop and awaited (bounded), which keeps the session usable.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import functools
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar

import anyio

from mikro._exceptions import DeadlockError, NotConnectedError

__all__ = ["Backend", "PortalContextManager", "PortalRunner"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Backend = Literal["asyncio", "trio"]

#: How often a waiting caller wakes up without a signal (interrupt_main, Windows, a dead loop thread).
_POLL_SECONDS = 0.05
#: How long a Ctrl-C'd call may take to unwind inside the loop before the caller stops waiting for it.
_CANCEL_GRACE_SECONDS = 5.0
#: How long interpreter exit waits for a forgotten session to close cleanly.
_EXIT_GRACE_SECONDS = 5.0

_CLOSED_MESSAGE = "this sync mikro session is closed; open a new one with mikro.sync.connect()"
_CLOSED_WHILE_RUNNING = "the sync mikro session was closed while this call was running"


class _Cancellable(Protocol):
    def cancel(self) -> Any: ...


class _Call(Generic[T]):
    """One coroutine call handed to the loop. The loop releases ``done`` once the task has unwound."""

    __slots__ = (
        "aborted",
        "args",
        "cancelled",
        "done",
        "error",
        "finished",
        "func",
        "future",
        "scope",
        "task",
        "value",
    )

    def __init__(
        self,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        future: concurrent.futures.Future[T] | None = None,
    ) -> None:
        self.func = func
        self.args = args
        self.future = future
        self.done = threading.Lock()
        self.done.acquire()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None  # asyncio only
        self.scope: _Cancellable | None = None  # once running: its task (asyncio) or its scope (trio)
        self.cancelled = False  # by its caller (Ctrl-C, a cancelled future)
        self.aborted = False  # by the session closing under it
        self.finished = False


class PortalRunner:
    """Owns one event loop in its own daemon thread and runs calls on it."""

    def __init__(self, backend: Backend = "asyncio", backend_options: dict[str, Any] | None = None) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self.backend: Backend = backend
        self._closed = False
        self._soon: Callable[..., object] | None = None
        self._spawn_task: Callable[[_Call[Any]], None] = _not_started
        self._running: set[_Call[Any]] = set()  # touched on the loop thread only
        self._closing = False  # set on the loop thread when close() begins
        self._stop_event: anyio.Event | None = None
        # Context managers to exit cleanly (newest first) before the loop stops, e.g. the async session.
        self._owned: list[PortalContextManager[Any]] = []
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        # An empty context: where threads inherit their creator's (3.14 free-threaded), the caller's
        # context vars (its own current session, its own loop's) must not leak into this loop.
        fresh: dict[str, Any] = {"context": contextvars.Context()} if sys.version_info >= (3, 14) else {}
        self._thread = threading.Thread(
            target=self._run_loop,
            args=(ready, backend_options),
            name=f"mikro-sync-{backend}",
            daemon=True,
            **fresh,
        )
        self._thread.start()
        try:
            self._wait_future(ready)
        except BaseException:
            self._stop(None)
            raise
        self.loop_thread_id: int = self._thread.ident or 0
        _live_runners.add(self)
        _ensure_exit_hook()

    # -- the loop thread ------------------------------------------------------------------------------

    def _run_loop(
        self, ready: concurrent.futures.Future[None], backend_options: dict[str, Any] | None
    ) -> None:
        try:
            anyio.run(self._main, ready, backend=self.backend, backend_options=backend_options)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            # Otherwise the loop died after start: callers notice a dead thread while they wait.

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        # Every callback from another thread runs in this context, and every task started by one copies it:
        # the loop's own context, never the caller thread's (whose context vars belong to another loop).
        context = contextvars.copy_context()
        self._stop_event = anyio.Event()
        if self._closed:  # given up on while starting (Ctrl-C): _stop may not have seen the event
            return
        if self.backend == "trio":
            await self._serve_trio(ready, context)
        else:
            await self._serve_asyncio(ready, context)

    # Calls run as native tasks (see the module docstring). Cancelling one is then the backend's own:
    # Task.cancel() on asyncio (anyio code inside handles it like any native cancellation), a cancel
    # scope on trio.

    async def _serve_asyncio(
        self, ready: concurrent.futures.Future[None], context: contextvars.Context
    ) -> None:
        loop = asyncio.get_running_loop()

        def spawn(call: _Call[Any]) -> None:
            # `call` (kept in self._running until it finishes) holds the task: asyncio itself only keeps
            # weak references to tasks.
            call.task = loop.create_task(self._run_asyncio(call))

        self._spawn_task = spawn
        self._soon = functools.partial(loop.call_soon_threadsafe, context=context)
        ready.set_result(None)
        try:
            await self._stop_event_wait()
        finally:
            running = list(self._running)
            tasks = [call.task for call in running if call.task is not None]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            for call in running:
                if not call.finished:  # cancelled before its first step, so its `finally` never ran
                    call.error = NotConnectedError(_CLOSED_WHILE_RUNNING)
                    self._finish(call)

    async def _run_asyncio(self, call: _Call[Any]) -> None:
        try:
            if call.cancelled:
                call.error = _cancelled(call)
                return
            call.scope = call.task  # only now: a task cancelled before its first step skips `finally`
            call.value = await call.func(*call.args)
        except asyncio.CancelledError:
            # Our own task, so nothing above it waits for this cancellation (Ctrl-C, or the loop stops).
            call.error = _cancelled(call)
        except BaseException as exc:
            call.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            call.scope = None
            self._finish(call)

    async def _serve_trio(self, ready: concurrent.futures.Future[None], context: contextvars.Context) -> None:
        import trio  # not at module level: asyncio users need not pay for importing it

        async def run(call: _Call[Any]) -> None:
            try:
                if call.cancelled:
                    call.error = _cancelled(call)
                    return
                with trio.CancelScope() as scope:
                    call.scope = scope
                    call.value = await call.func(*call.args)
                if scope.cancelled_caught:
                    call.error = _cancelled(call)
            except BaseException as exc:
                # The nursery's own cancellation (the loop stops) must propagate; the caller is told.
                call.error = _cancelled(call) if isinstance(exc, trio.Cancelled) else exc
                if not isinstance(exc, Exception):
                    raise
            finally:
                call.scope = None
                self._finish(call)

        token = trio.lowlevel.current_trio_token()

        def soon(func: Callable[..., object], *args: Any) -> None:
            token.run_sync_soon(context.run, func, *args)

        async with trio.open_nursery() as nursery:

            def spawn(call: _Call[Any]) -> None:
                nursery.start_soon(run, call)

            self._spawn_task = spawn
            self._soon = soon
            ready.set_result(None)
            await self._stop_event_wait()
            nursery.cancel_scope.cancel()

    async def _stop_event_wait(self) -> None:
        assert self._stop_event is not None
        await self._stop_event.wait()

    def _spawn(self, call: _Call[Any]) -> None:
        # Runs on the loop, as a callback from another thread.
        if self._closing and call.future is None:
            call.error = NotConnectedError(_CLOSED_MESSAGE)
            self._finish(call)
            return
        try:
            self._spawn_task(call)
            self._running.add(call)
        except BaseException as exc:  # the nursery is closing: the session is being closed
            call.error = NotConnectedError(_CLOSED_MESSAGE)
            call.error.__cause__ = exc
            self._finish(call)

    def _finish(self, call: _Call[Any]) -> None:
        self._running.discard(call)
        future = call.future
        if future is not None and future.set_running_or_notify_cancel():
            if call.error is None:
                future.set_result(call.value)
            else:
                future.set_exception(call.error)
        call.finished = True
        call.done.release()

    @staticmethod
    def _cancel_scope_of(call: _Call[Any]) -> None:
        if call.scope is not None:
            call.scope.cancel()

    def _abort_calls(self) -> list[_Call[Any]]:
        # On the loop: cancel the blocking calls in flight (not the context managers' tasks, which hold
        # the async session and are exited in order), so none still uses the session while it closes.
        self._closing = True  # and refuse the ones that arrive from now on
        calls = [call for call in self._running if call.future is None]
        for call in calls:
            call.aborted = call.cancelled = True
            self._cancel_scope_of(call)
        return calls

    # -- callers' side --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def check_caller(self) -> None:
        """Refuse calls that could never finish: from the loop thread itself, or after close."""
        if self._closed:
            raise NotConnectedError(_CLOSED_MESSAGE)
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
        call = _Call(func, args)
        self._submit(call)
        try:
            while not call.done.acquire(True, _POLL_SECONDS):
                self._check_alive()
        except KeyboardInterrupt:
            self._abandon(call)
            raise
        error = call.error
        if error is None:
            return call.value  # type: ignore[return-value]
        try:
            raise error
        finally:
            # The traceback would keep this frame, and so the call and the error, alive in a cycle.
            del call, error

    def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """Run the plain function ``func(*args)`` on the loop, in its base context; return its result.

        Context variables it sets stay set for every call started afterwards (e.g. the current session).
        """
        self.check_caller()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:
                    future.set_exception(exc)

        self._schedule(run)
        return self._wait_future(future)

    def start(self, func: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start ``func`` as a task on the loop without waiting; cancelling the future cancels the task."""
        self.check_caller()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        call = _Call(func, (), future)
        # The future stays pending while the task runs, so that cancel() succeeds and reaches the task.
        future.add_done_callback(lambda f: self._cancel(call) if f.cancelled() else None)
        self._submit(call)
        return future

    def wait(self, future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
        """``future.result(timeout)``, interruptible by Ctrl-C, failing if the loop thread died."""
        return self._wait_future(future, timeout)

    def _submit(self, call: _Call[Any]) -> None:
        self._schedule(self._spawn, call)

    def _schedule(self, func: Callable[..., object], *args: Any) -> None:
        soon = self._soon
        if soon is None:
            raise NotConnectedError(_CLOSED_MESSAGE)
        try:
            soon(func, *args)
        except RuntimeError as exc:  # asyncio: the loop is closed; trio: RunFinishedError
            raise NotConnectedError(_CLOSED_MESSAGE) from exc

    def _cancel(self, call: _Call[Any]) -> None:
        # Runs in any thread. Seen by the task when it starts, or its scope is cancelled on the loop.
        call.cancelled = True
        with contextlib.suppress(NotConnectedError):
            self._schedule(self._cancel_scope_of, call)

    def _abandon(self, call: _Call[Any]) -> None:
        if call.finished:
            return
        self._cancel(call)
        if self._thread.is_alive():
            call.done.acquire(True, _CANCEL_GRACE_SECONDS)

    def _check_alive(self) -> None:
        if not self._thread.is_alive():
            self._closed = True
            raise NotConnectedError("the sync mikro session's event loop thread has stopped")

    def _wait_future(self, future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
        # Not one long `future.result()`: see the module docstring. A TimeoutError the call itself raised
        # is told apart from the wait's own by the future being done.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - time.monotonic())
            try:
                return future.result(max(step, 0.0))
            except TimeoutError:
                if future.done():
                    raise
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no result within {timeout} s")
            if not self._thread.is_alive() and not future.done():
                raise NotConnectedError("the sync mikro session's event loop thread has stopped")

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
        """End the blocking calls in flight, exit the owned context managers, stop the loop, join its thread.

        A call still waiting in another thread raises :class:`NotConnectedError`. With ``timeout``, each
        step waits at most that long, so a stuck cleanup cannot hang the caller.
        """
        if self._closed:
            return
        self.check_caller()
        try:
            with contextlib.suppress(NotConnectedError):
                aborted = self.run_sync(self._abort_calls)
                # Their callers are told; wait (bounded) until they have let go of the session.
                deadline = time.monotonic() + (_CANCEL_GRACE_SECONDS if timeout is None else timeout)
                while not all(call.finished for call in aborted) and time.monotonic() < deadline:
                    time.sleep(0.005)
            while self._owned:
                self._owned.pop().exit(timeout=timeout)
        finally:
            self._stop(timeout)

    def _stop(self, timeout: float | None) -> None:
        self._closed = True
        _live_runners.discard(self)
        stop_event = self._stop_event
        if stop_event is not None:
            with contextlib.suppress(NotConnectedError):  # the loop already ended
                self._schedule(stop_event.set)
        if threading.get_ident() != self._thread.ident:
            self._thread.join(timeout)
        # A daemon thread stuck in cleanup past the timeout is left behind: it must not hang the caller
        # (or interpreter exit).


class PortalContextManager(Generic[T_co]):
    """A sync context manager over an async one, entered and exited by ONE task on the runner's loop.

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
            return self._runner.wait(self._entered)
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
        try:
            self._runner.run_sync(event.set)
        except NotConnectedError:
            return False  # the loop is gone; its cancellation already ran __aexit__
        try:
            return bool(self._runner.wait(task, timeout))
        except KeyboardInterrupt:
            task.cancel()
            raise
        except (concurrent.futures.CancelledError, TimeoutError, NotConnectedError):
            if not task.done():
                return False  # still unwinding after `timeout` (or the loop died): stopping cancels it
            ended = (concurrent.futures.CancelledError, NotConnectedError)
            if task.cancelled() or isinstance(task.exception(), ended):
                return False  # cancelled, or the session closed under it: its __aexit__ already ran
            raise


def _cancelled(call: _Call[Any]) -> BaseException:
    # Cancelled by its caller (Ctrl-C, a cancelled future), or by the session closing under it.
    if call.cancelled and not call.aborted:
        return concurrent.futures.CancelledError()
    return NotConnectedError(_CLOSED_WHILE_RUNNING)


def _not_started(call: _Call[Any]) -> None:
    raise NotConnectedError(_CLOSED_MESSAGE)


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
    # its connections never closed. Close it in threading's exit hook: that runs before non-daemon
    # threads are joined and before concurrent.futures shuts down the executors the loop may still use
    # (it registered earlier, and these hooks run newest first); plain atexit runs after both.
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
