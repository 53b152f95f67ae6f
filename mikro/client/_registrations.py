"""Group commit of new images: concurrent uploads register with one ``createRepresentations`` request.

Each finished upload must be recorded on the server. One request per image costs a round trip, an HTTP
request's parsing and authentication, and a write transaction: with many uploads in flight, those
transactions queue on the database's write lock and the server's CPU becomes the ingest's ceiling.
:class:`Registrations` sends the first registration at once and, while that request is in flight,
collects the ones that arrive; the next request carries all of them. A lone upload therefore waits for
nothing, and concurrent ones share requests. No timer and no background task: whichever waiting caller
finds no request in flight sends the next batch.

A batch is all or nothing on the server. When one fails with a GraphQL error (a bad input, a store
already used), each of its images is sent again on its own, so every caller gets its own answer. An
error that got no GraphQL answer (unreachable server, timeout) is every caller's error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from mikro._exceptions import GraphQLError, TransportError

if TYPE_CHECKING:
    from mikro.api import Representation

__all__ = ["BATCH_AT_MOST", "BATCH_BYTES_AT_MOST", "Registrations", "request_chunks", "request_end"]

#: Most images per ``createRepresentations`` request (the server accepts up to 256). Each request costs
#: the server a fixed share (HTTP, authentication, a transaction, the answer's loaders) that measured
#: about as much as 30 small images' rows: 128 make it a few percent.
BATCH_AT_MOST = 128
#: Most bytes of registrations per request, below the server's default body limit (4 MiB): a thumbnail
#: sent with its registration is tens of kilobytes of base64.
BATCH_BYTES_AT_MOST = 3 * 1024 * 1024
#: About what a registration takes in the body besides its thumbnail and array documents.
_INPUT_BYTES = 1024

Input = Mapping[str, Any]
SendMany = Callable[[list[Input]], Awaitable[list["Representation"]]]
SendOne = Callable[[Input], Awaitable["Representation"]]


def _document(input: Input) -> str | None:
    """An input's (or a level's) array document, its keys snake_case or already camelCase (`wire_input`)."""
    found = input.get("array_metadata")
    return input.get("arrayMetadata") if found is None else found


def _input_bytes(input: Input) -> int:
    thumbnail = input.get("thumbnail") or {}
    documents = [_document(input), *(_document(level) for level in input.get("levels") or ())]
    return _INPUT_BYTES + len(thumbnail.get("png") or "") + sum(len(d or "") for d in documents)


def request_end(inputs: Sequence[Input], start: int = 0) -> int:
    """Where the request that registers ``inputs[start:]`` ends: at most `BATCH_AT_MOST` inputs and
    `BATCH_BYTES_AT_MOST` of body (an input larger than that goes alone)."""
    size = 0
    for i in range(start, min(len(inputs), start + BATCH_AT_MOST)):
        size += _input_bytes(inputs[i])
        if i > start and size > BATCH_BYTES_AT_MOST:
            return i
    return min(len(inputs), start + BATCH_AT_MOST)


def request_chunks(inputs: Sequence[Input]) -> list[range]:
    """``inputs`` split, in order, into the requests that register them (see `request_end`)."""
    chunks: list[range] = []
    start = 0
    while start < len(inputs):
        end = request_end(inputs, start)
        chunks.append(range(start, end))
        start = end
    return chunks


@dataclass
class _Pending:
    input: Input
    result: Representation | None = None
    error: BaseException | None = None
    done: bool = field(default=False)

    def settle(self, result: Representation | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True


class Registrations:
    """A session's queue of images waiting to be recorded. Used from the session's event loop only;
    create it in the session's ``__aenter__``."""

    #: A request cut off mid-way (cancelled, timed out) may have committed its rows.
    may_leave_rows = True

    def __init__(self, send_many: SendMany, send_one: SendOne) -> None:
        self._send_many = send_many
        self._send_one = send_one
        self._queue: list[_Pending] = []
        self._sending = False
        self._sent = anyio.Event()

    async def register(self, input: Input) -> Representation:
        """Create the image's ``Representation`` (in a batch with the others waiting); its answer.

        Call it shielded from cancellation: once queued, the image may be committed by whichever caller
        sends the batch, and the caller must learn whether it was.
        """
        item = _Pending(input)
        self._queue.append(item)
        while not item.done:
            if self._sending:
                await self._sent.wait()
                continue
            first = request_end([p.input for p in self._queue[:BATCH_AT_MOST]])
            batch, self._queue = self._queue[:first], self._queue[first:]
            self._sending = True
            try:
                await self._send(batch)
            except BaseException:
                # Interrupted mid-request (KeyboardInterrupt, a cancellation the caller did not shield
                # from): whether the server committed is unknown, and the others must not wait forever.
                for p in batch:
                    if not p.done:
                        p.settle(error=TransportError("the request registering this image was interrupted"))
                raise
            finally:
                self._sending = False
                sent, self._sent = self._sent, anyio.Event()
                sent.set()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    async def _send(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            await self._send_alone(batch[0])
            return
        try:
            results = await self._send_many([p.input for p in batch])
        except GraphQLError:
            # All or nothing: nothing was created. Each image on its own gets its own answer.
            async with anyio.create_task_group() as tg:
                for p in batch:
                    tg.start_soon(self._send_alone, p)
            return
        except Exception as exc:
            for p in batch:
                p.settle(error=exc)
            return
        for p, result in zip(batch, results, strict=True):
            p.settle(result)

    async def _send_alone(self, p: _Pending) -> None:
        try:
            p.settle(await self._send_one(p.input))
        except Exception as exc:
            p.settle(error=exc)
