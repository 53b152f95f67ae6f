"""Live events of a session: ``async with m.watch_representations(dataset=d) as events:``.

The session opens one graphql-transport-ws websocket, lazily, on its first watch, and shares it with
every later one; :mod:`mikro.graphql._subscriptions` explains reconnecting and slow consumers.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from mikro.api import MikroModel, RepresentationEvent, RoiEvent
from mikro.api._documents import _definitions, _fragments_of
from mikro.api._operations import IdLike, _id
from mikro.datalayer._warmup import import_pixel_stack, pixel_stack_imported
from mikro.graphql._subscriptions import EventStream, SubscriptionClient, SubscriptionSettings

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from mikro._config import ClientConfig

__all__ = ["Watch", "WatchMixin", "subscription_document"]

E = TypeVar("E", bound=MikroModel)

# Events carry the same selection as ``get_representation`` / ``get_roi``, so an event's model is as
# complete as a fetched one. ``$after`` is set by the client when it resubscribes.
_DOCUMENTS = {
    "WatchRepresentations": """
subscription WatchRepresentations($dataset: ID, $after: Int) {
  representations(dataset: $dataset, after: $after) {
    cursor
    kind
    id
    representation {
      ...RepresentationDetail
    }
  }
}""",
    "WatchRois": """
subscription WatchRois($representation: ID!, $after: Int) {
  rois(representation: $representation, after: $after) {
    cursor
    kind
    id
    roi {
      ...RoiDetail
    }
  }
}""",
}


@cache
def subscription_document(name: str) -> str:
    """The subscription ``name`` with the fragments (from mikro/api/documents) it uses."""
    body = _DOCUMENTS[name].strip()
    return "\n\n".join([body, *_fragments_of(body, _definitions(), set())]) + "\n"


class Watch(Generic[E]):
    """What ``watch_*`` returns: entering it yields the subscription's :class:`EventStream`."""

    def __init__(
        self,
        session: WatchMixin,
        name: str,
        variables: Mapping[str, Any],
        *,
        field: str,
        model: type[E],
        after: int | None,
        buffer: int | None,
    ) -> None:
        self._session = session
        self._name = name
        self._variables = dict(variables)
        self._field = field
        self._model = model
        self._after = after
        self._buffer = buffer
        self._stream: EventStream[E] | None = None

    def _parse(self, payload: dict[str, Any]) -> E:
        return self._model.model_validate(payload, context={"session": self._session})

    async def __aenter__(self) -> EventStream[E]:
        if self._stream is not None:
            raise RuntimeError("this watch was already entered; call watch_* again for another")
        client = await self._session._subscription_client()
        if "Representation" in self._name and not pixel_stack_imported():
            await import_pixel_stack()  # its events hand out images, whose .data must not stall the loop
        self._stream = client.subscribe(
            subscription_document(self._name),
            self._variables,
            field=self._field,
            parse=self._parse,
            after=self._after,
            buffer=self._buffer,
        )
        return await self._stream.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None:
            await self._stream.__aexit__(exc_type, exc, tb)


class WatchMixin:
    """The ``watch_*`` methods of :class:`mikro.Mikro`.

    Each event says what happened (``kind``: CREATE, UPDATE, DELETE, or GAP when events were lost) and
    carries the typed model (``None`` for DELETE and GAP), plus its ``cursor``: pass the last cursor
    you handled as ``after=`` to a later watch to get everything since, even across sessions.
    """

    #: Timeouts, keep-alive, buffer and reconnect policy of the session's subscription websocket;
    #: set it on the session before its first watch to change them.
    watch_settings: SubscriptionSettings = SubscriptionSettings()

    _watch_client: SubscriptionClient | None = None
    _watch_ready: anyio.Event | None = None

    if TYPE_CHECKING:
        # Provided by the session class this is mixed into.
        config: ClientConfig

        @property
        def task_group(self) -> TaskGroup: ...

        def _require_open(self) -> None: ...

    def watch_representations(
        self, dataset: IdLike | None = None, *, after: int | None = None, buffer: int | None = None
    ) -> Watch[RepresentationEvent]:
        """Events for your images (only those in ``dataset``, if given).

        Without ``after``, events start once the server has the subscription: to miss nothing made
        right after entering, pass a cursor (``after=0``: everything the server's log still holds).
        ``buffer`` bounds the events held for a slow reader (default ``watch_settings.buffer``).
        """
        variables = {"dataset": _id(dataset) if dataset is not None else None}
        return Watch(
            self,
            "WatchRepresentations",
            variables,
            field="representations",
            model=RepresentationEvent,
            after=after,
            buffer=buffer,
        )

    def watch_rois(
        self, representation: IdLike, *, after: int | None = None, buffer: int | None = None
    ) -> Watch[RoiEvent]:
        """Events for the ROIs of one image; ``after`` and ``buffer`` as in :meth:`watch_representations`."""
        return Watch(
            self,
            "WatchRois",
            {"representation": _id(representation)},
            field="rois",
            model=RoiEvent,
            after=after,
            buffer=buffer,
        )

    @property
    def subscriptions(self) -> SubscriptionClient | None:
        """The session's subscription client (``None`` before the first watch)."""
        return self._watch_client

    async def _subscription_client(self) -> SubscriptionClient:
        """The session's subscription client, started in the session's task group on first use."""
        while True:
            self._require_open()
            client, ready = self._watch_client, self._watch_ready
            if client is not None and ready is not None:
                # Another watch is starting it (or has): use it once it runs, or retry if that failed.
                await ready.wait()
                if self._watch_client is client:
                    return client
                continue
            token = self.config.token.get_secret_value() if self.config.token is not None else None
            client = SubscriptionClient(self.config.ws_url, token=token, settings=self.watch_settings)
            ready = anyio.Event()
            # Set before the first await, so a concurrent first watch waits for this client.
            self._watch_client, self._watch_ready = client, ready
            try:
                await self.task_group.start(self._serve_subscriptions, client)
            except BaseException:
                self._watch_client = self._watch_ready = None
                raise
            finally:
                ready.set()
            return client

    @staticmethod
    async def _serve_subscriptions(client: SubscriptionClient, *, task_status: TaskStatus[None]) -> None:
        # The client lives in the session's task group: the session's exit cancels this task, which
        # closes the websocket and ends every watch's iteration.
        async with client:
            task_status.started()
            await anyio.sleep_forever()
