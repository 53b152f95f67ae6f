"""Blocking iteration over what the async session streams: paged listings and subscription events.

The async side always owns the reader. An async iterable (an ``iter_*`` paging generator, a stream
without ``receive()``) is drained by ONE pump task on the portal's loop into a bounded memory object
stream; the caller's thread only ever receives from a stream, one portal call per batch. An async
generator is thus never resumed from different portal calls (i.e. different tasks), which trio forbids
and which breaks cancel scopes under asyncio.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mikro.sync._portal import PortalContextManager, PortalRunner

__all__ = ["SyncContextManager", "SyncIterator", "SyncStream"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: Items a pump may run ahead of the consumer (an ``iter_*`` then pre-fetches about one page).
_PUMP_BUFFER = 128
#: Items handed over per portal call when several are ready.
_BATCH = 64


class _Receivable(Protocol[T_co]):
    async def receive(self) -> T_co: ...


class _Failure:
    """What a pump sends instead of an item when its iterable raised: re-raised by the consumer."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


async def _pump_into(iterable: AsyncIterable[Any], send: MemoryObjectSendStream[Any]) -> None:
    async with send:
        try:
            iterator = aiter(iterable)
            if hasattr(iterator, "aclose"):
                async with aclosing(iterator):  # type: ignore[type-var]
                    async for item in iterator:
                        await send.send(item)
            else:
                async for item in iterator:
                    await send.send(item)
        except Exception as exc:  # handed to the consumer with its own type, not as an ExceptionGroup
            await send.send(_Failure(exc))


@asynccontextmanager
async def pumped(iterable: AsyncIterable[T]) -> AsyncIterator[MemoryObjectReceiveStream[Any]]:
    """Drain ``iterable`` in a task of this loop; yield the stream its items (or a ``_Failure``) arrive on."""
    send, receive = anyio.create_memory_object_stream[Any](_PUMP_BUFFER)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump_into, iterable, send)
        try:
            yield receive
        finally:
            tg.cancel_scope.cancel()
            receive.close()


async def _receive_batch(stream: _Receivable[T], wait: float | None) -> list[T]:
    with anyio.fail_after(wait):
        first = await stream.receive()
    items = [first]
    receive_nowait: Callable[[], T] | None = getattr(stream, "receive_nowait", None)
    if receive_nowait is not None:
        while len(items) < _BATCH:
            try:
                items.append(receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
    return items


class SyncStream(Generic[T]):
    """Blocking view of an async receive stream: ``for item in stream``, or ``stream.receive(timeout=...)``.

    Iteration ends when the async side closes the stream. Not thread-safe: consume from one thread.
    """

    def __init__(self, runner: PortalRunner, stream: _Receivable[T], *, source: object = None) -> None:
        self._runner = runner
        self._stream = stream
        self._source = source
        self._ready: deque[T] = deque()
        self._ended = False

    def __getattr__(self, name: str) -> Any:
        # Plain data of the async stream underneath (e.g. a subscription's ``cursor``), read-only.
        source = self.__dict__.get("_source")
        if name.startswith("_") or source is None:
            raise AttributeError(name)
        value = getattr(source, name)
        if not callable(value):
            return value
        raise AttributeError(f"{name!r} of the async stream cannot be called from sync code")

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopIteration from None

    def receive(self, timeout: float | None = None) -> T:
        """The next item, waiting at most ``timeout`` seconds (then the builtin ``TimeoutError``).

        Raises ``anyio.EndOfStream`` once the stream has ended.
        """
        if not self._ready:
            if self._ended:
                raise anyio.EndOfStream
            try:
                batch = self._runner.call(_receive_batch, self._stream, timeout)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._ended = True
                raise
            self._ready.extend(batch)
        item = self._ready.popleft()
        if isinstance(item, _Failure):
            self._ended = True
            self._ready.clear()
            raise item.exc
        return item


class SyncIterator(SyncStream[T]):
    """Blocking iterator over an async iterable (an ``iter_*`` listing), drained by a pump on the loop.

    The pump starts on the first ``next()`` and stops when the iterable is exhausted, on :meth:`close`
    (or leaving ``with``), or when the session closes. Not thread-safe: consume from one thread.
    """

    def __init__(self, runner: PortalRunner, make_iterable: Callable[[], AsyncIterable[T]]) -> None:
        super().__init__(runner, _NotStarted())
        self._make_iterable = make_iterable
        self._pump: PortalContextManager[MemoryObjectReceiveStream[Any]] | None = None

    def receive(self, timeout: float | None = None) -> T:
        if self._pump is None and not self._ended:
            pump = self._runner.wrap_async_context_manager(functools.partial(_pump, self._make_iterable))
            self._stream = pump.__enter__()  # on Ctrl-C nothing is kept: the next call starts afresh
            self._pump = pump
        try:
            return super().receive(timeout)
        except BaseException:
            if self._ended:  # exhausted or failed (not interrupted): release the pump now
                self.close()
            raise

    def close(self) -> None:
        """Stop the pump (idempotent); iteration then ends."""
        self._ended = True
        self._ready.clear()
        pump, self._pump = self._pump, None
        if pump is not None and not self._runner.closed:
            pump.exit()

    def __enter__(self) -> SyncIterator[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A loop that ends iteration early leaves the pump parked on a full buffer; stop it now unless
        # that would block the loop's own thread (then the session's close cancels it).
        if self._pump is not None and not self._runner.closed:
            try:
                self._runner.check_caller()
            except Exception:
                return
            with contextlib.suppress(Exception):
                self.close()


class _NotStarted:
    async def receive(self) -> Any:
        raise anyio.EndOfStream


@asynccontextmanager
async def _pump(
    make_iterable: Callable[[], AsyncIterable[T]],
) -> AsyncIterator[MemoryObjectReceiveStream[Any]]:
    # The iterable is created here, on the loop, so the async generator belongs to the pump task.
    async with pumped(make_iterable()) as receive:
        yield receive


class SyncContextManager(Generic[T]):
    """Blocking ``with`` over an async context manager (a ``watch_*`` subscription) of the async session.

    ``__enter__`` returns a :class:`SyncStream` when the async side yields a stream (anything with
    ``receive()``) or an async iterable (then pumped on the loop); any other value is returned as is.
    """

    def __init__(self, runner: PortalRunner, make_cm: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._runner = runner
        self._make_cm = make_cm
        self._wrapped: PortalContextManager[Any] | None = None

    def __enter__(self) -> Any:
        if self._wrapped is not None:
            raise RuntimeError("this context manager is already entered; it cannot be re-entered")
        self._wrapped = self._runner.wrap_async_context_manager(functools.partial(_adapted, self._make_cm))
        value = self._wrapped.__enter__()
        if isinstance(value, _Adapted):
            return SyncStream(self._runner, value.stream, source=value.source)
        return value

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        wrapped, self._wrapped = self._wrapped, None
        if wrapped is None or self._runner.closed:
            return False
        return wrapped.__exit__(exc_type, exc, tb)


@asynccontextmanager
async def _adapted(make_cm: Callable[[], AbstractAsyncContextManager[Any]]) -> AsyncIterator[Any]:
    async with make_cm() as value:
        if callable(getattr(value, "receive", None)):
            yield _Adapted(value, value)
        elif hasattr(value, "__anext__") and not inspect.isasyncgen(value):
            # An async iterator object (not a generator): each __anext__ stands alone, so the consumer
            # may take events one portal call at a time - nothing is read ahead of it (the stream's own
            # buffer, overflow policy and cursor keep their meaning).
            yield _Adapted(_NextReceiver(value), value)
        elif hasattr(value, "__aiter__"):
            async with pumped(value) as receive:
                yield _Adapted(receive, value)
        else:
            yield value


class _Adapted:
    def __init__(self, stream: _Receivable[Any], source: object) -> None:
        self.stream = stream
        self.source = source


class _NextReceiver:
    def __init__(self, iterator: Any) -> None:
        self._iterator = iterator

    async def receive(self) -> Any:
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None
