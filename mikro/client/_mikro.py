"""The session: ``async with mikro.connect() as m:`` — one task group, one HTTP pool, its limiters."""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import anyio
import anyio.abc
import httpx
import pydantic

from mikro._config import ClientConfig, cores, load_config
from mikro._context import reset_current_session, set_current_session
from mikro._exceptions import MikroError, NotConnectedError
from mikro.api import Operations, operation
from mikro.api._file_operations import FileOperations
from mikro.api._models import Representation
from mikro.api._operations import IdLike, _id
from mikro.client._batch import BatchMixin
from mikro.client._data import DataPlaneMixin
from mikro.client._files import FilesMixin
from mikro.client._grant_refresh import RequestAccessProvider, RequestLevelsProvider
from mikro.client._ingest import IngestMixin
from mikro.client._pyramid import PyramidMixin
from mikro.client._registrations import Registrations
from mikro.client._reservations import UploadReservations
from mikro.client._watch import WatchMixin
from mikro.datalayer import GrantProvider
from mikro.datalayer._result_memory import release_kept_results
from mikro.datalayer._shard import SHARD_BUFFERS
from mikro.datalayer._warmup import (
    holds_images,
    import_pixel_stack,
    pixel_stack_imported,
    warm_up_in_background,
)
from mikro.graphql import (
    AsyncTransport,
    BlockingTransport,
    RetryPolicy,
    async_http_transport,
    new_idempotency_key,
    tls_context,
)

__all__ = ["Mikro", "connect"]

T = TypeVar("T")


@functools.cache
def _user_agent() -> str:
    # Cached: reading the installed metadata parses files, and every upload's grant provider asks.
    try:
        return f"mikro/{importlib.metadata.version('mikro')}"
    except importlib.metadata.PackageNotFoundError:
        return "mikro"


def _holds_image_models(value: Any, depth: int = 6) -> bool:
    """Whether validated models (a page, its lists, their relations) hold a Representation."""
    if isinstance(value, Representation):
        return True
    if depth == 0:
        return False
    if isinstance(value, pydantic.BaseModel):
        items: Iterable[Any] = value.__dict__.values()
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    return any(
        _holds_image_models(item, depth - 1)
        for item in items
        if isinstance(item, pydantic.BaseModel | list | dict)
    )


class Mikro(
    BatchMixin, DataPlaneMixin, PyramidMixin, FilesMixin, WatchMixin, IngestMixin, FileOperations, Operations
):
    """A session with a mikro server, usable under asyncio and trio.

    Everything it owns is made on entry and closed on exit, also when the body raises or is
    cancelled: an ``httpx.AsyncClient`` (pooled keep-alive connections, timeouts), a blocking
    ``httpx.Client`` for worker threads (:meth:`grant_provider`), a :class:`anyio.CapacityLimiter`
    for worker threads (:attr:`thread_limiter`) and one task group for background work
    (:attr:`task_group`). While open it is the *current* session of its task, which module-level
    functions such as ``mikro.aget_representation`` use.

    Its methods: the typed GraphQL operations (:class:`mikro.api.Operations`), pixels, tables and
    compute (``DataPlaneMixin``), files kept as they are (``FilesMixin``, ``FileOperations``) and live
    events (``WatchMixin``: ``watch_representations``, ``watch_rois``).
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._open = False
        self._closed = False

    def __repr__(self) -> str:
        state = "open" if self._open else ("closed" if self._closed else "not entered")
        return f"<Mikro {self.config.url} ({state})>"

    # -- lifecycle -----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._open or self._closed:
            raise MikroError("a mikro session can be entered once; call mikro.connect() for another")
        config = self.config
        token = config.token.get_secret_value() if config.token is not None else None
        timeout = httpx.Timeout(config.timeout)
        limits = httpx.Limits(
            max_connections=config.max_connections, max_keepalive_connections=config.max_connections
        )
        headers = {"User-Agent": _user_agent()}
        retry = RetryPolicy(retries=config.retries, deadline=config.timeout)
        url = str(config.url)

        # Not waited for here: see _execute (a script that only handles metadata never waits).
        warm_up_in_background()
        self._thread_limiter = anyio.CapacityLimiter(config.max_threads)
        self._local_limiter = anyio.CapacityLimiter(min(config.max_threads, cores()))
        tls = tls_context(url)
        http_transport = async_http_transport(verify=tls, limits=limits)
        self._http = httpx.AsyncClient(
            timeout=timeout, limits=limits, headers=headers, verify=tls, transport=http_transport
        )
        self._blocking_http = httpx.Client(timeout=timeout, limits=limits, headers=headers, verify=tls)
        self.transport = AsyncTransport(
            self._http,
            url,
            token=token,
            retry=retry,
            timeout=config.timeout,
            max_in_flight=config.max_connections,
            direct=http_transport,
        )
        self.blocking_transport = BlockingTransport(
            self._blocking_http, url, token=token, retry=retry, timeout=config.timeout
        )
        self._open_data_plane()
        self.reservations = UploadReservations(
            self.request_uploads, self._release_unused, lambda task: self._task_group.start_soon(task)
        )
        self.registrations = Registrations(self._create_representation_rows, self._create_representation_row)
        # Files batch as images do (createFiles); the queue is typed for images, hence the casts.
        self.file_registrations = Registrations(
            cast(Any, self._create_file_rows), cast(Any, self._create_file_row)
        )
        task_group = anyio.create_task_group()
        try:
            await task_group.__aenter__()
        except BaseException:
            await self._close_clients()
            raise
        self._task_group = task_group
        self._loop_thread = threading.get_ident()
        self._open = True
        self._context_token = set_current_session(self)
        self._previous_session = self._context_token.old_value
        if self._previous_session is self._context_token.MISSING:
            self._previous_session = None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._open = False
        self._closed = True
        reset_current_session(self._context_token, self._previous_session)
        try:
            # Background work belongs to the session: it ends with it. The body's own exception is
            # not handed to the task group (it would come out wrapped in an ExceptionGroup); it
            # propagates unchanged once this returns.
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)
            return None
        finally:
            try:
                await self.reservations.aclose()
            finally:
                await self._close_clients()
                # Memory kept warm for the next upload or read is not kept past the session.
                SHARD_BUFFERS.clear()
                release_kept_results()

    async def _close_clients(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._http.aclose()
            self._blocking_http.close()

    def _require_open(self) -> None:
        if not self._open:
            state = "closed" if self._closed else "not open yet"
            raise NotConnectedError(
                f"this mikro session is {state}: use it inside `async with mikro.connect() as m:`"
            )

    def _on_loop_thread(self) -> bool:
        """Whether the caller runs on this session's event loop thread (else: awaiting is not possible)."""
        return threading.get_ident() == self._loop_thread

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def thread_limiter(self) -> anyio.CapacityLimiter:
        """Bounds the worker threads this session's pixel I/O and compute use (``max_threads``)."""
        self._require_open()
        return self._thread_limiter

    @property
    def local_limiter(self) -> anyio.CapacityLimiter:
        """Bounds the worker threads that handle small local files and folder-store objects (at most
        one per core, and at most ``max_threads``).

        That work holds the GIL except for many short system calls. Each call hands the GIL to another
        waiting thread, so threads beyond the cores add only hand-offs. Measured on 2 cores, ingesting
        2,000 small TIFFs: 0.85 ms of system CPU per file with 8 threads, 0.47 ms with 2.
        """
        self._require_open()
        return self._local_limiter

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        """The session's task group: background work started here is cancelled when the session ends."""
        self._require_open()
        return self._task_group

    # -- GraphQL -------------------------------------------------------------------------------------

    async def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Run any GraphQL document; returns its ``data``.

        Queries are retried on transient failures. A mutation is retried only with an
        ``idempotency_key`` (the server then executes it once however often it arrives).
        """
        self._require_open()
        data = await self.transport.execute(
            document, variables, operation_name=operation_name, idempotency_key=idempotency_key
        )
        if not pixel_stack_imported() and holds_images(data):
            # The images handed out have a .data that would import dask and xarray on this loop.
            await import_pixel_stack()
        return data

    def _blocking_thumbnail_png(self, thumbnail_id: str) -> bytes:
        # For display hooks outside the event loop (a Representation's Jupyter view in mikro.sync).
        self._require_open()
        op = operation("GetThumbnailPng")
        data = self.blocking_transport.execute(op.document, {"id": thumbnail_id}, operation_name=op.name)
        return base64.b64decode(data["thumbnail"]["png"], validate=True)

    async def _release_unused(self, stores: list[str]) -> None:
        # Runs while the session closes (no longer open for callers), hence the transport directly.
        op = operation("ReleaseUploads")
        await self.transport.execute(
            op.document, {"stores": stores}, operation_name=op.name, idempotency_key=new_idempotency_key()
        )

    async def _execute(self, operation_name: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        op = operation(operation_name)
        # One key per logical call: every retry of this call carries the same key.
        key = new_idempotency_key() if op.is_mutation else None
        return await self.execute(op.document, variables, operation_name=op.name, idempotency_key=key)

    async def _execute_validated(
        self, operation_name: str, variables: Mapping[str, Any], shape: pydantic.TypeAdapter[T]
    ) -> T:
        op = operation(operation_name)
        key = new_idempotency_key() if op.is_mutation else None  # as in _execute: one per logical call
        self._require_open()
        result = await self.transport.execute_validated(
            op.document,
            variables,
            shape,
            operation_name=op.name,
            idempotency_key=key,
            context={"session": self},
        )
        if not pixel_stack_imported() and _holds_image_models(result):
            await import_pixel_stack()  # as in execute
        return result

    # -- the data plane's access to grants -----------------------------------------------------------

    def grant_provider(self, store_id: IdLike, write: bool = False) -> GrantProvider:
        """A blocking, thread-safe callable that asks the server for a fresh grant to ``store_id``.

        It sends ``requestAccess`` over this session's blocking HTTP client, so it may be called from
        any worker thread (dask tasks, obstore credential refresh) and never touches the event loop.
        Failures raise :class:`mikro.GrantError` (the server's error is its ``__cause__``). It pickles
        (with this session's token) so that dask.distributed workers can refresh grants themselves:
        see :class:`mikro.client._grant_refresh.RequestAccessProvider`.
        """
        return RequestAccessProvider(write=write, **self._provider_args(store_id))

    def _levels_grant_provider(self, store_id: IdLike, prefix: str) -> GrantProvider:
        """Like :meth:`grant_provider`, renewing the write grant of one pyramid build's levels prefix."""
        return RequestLevelsProvider(prefix=prefix, **self._provider_args(store_id))

    def _provider_args(self, store_id: IdLike) -> dict[str, Any]:
        self._require_open()
        config = self.config
        return {
            "url": str(config.url),
            "token": config.token.get_secret_value() if config.token is not None else None,
            "store_id": _id(store_id),
            "timeout": config.timeout,
            "retries": config.retries,
            "user_agent": _user_agent(),
            "session": self,
        }


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    max_connections: int | None = None,
    max_threads: int | None = None,
) -> Mikro:
    """A session with the mikro server at ``url``; use it as ``async with mikro.connect() as m:``.

    Arguments left out come from the environment (``MIKRO_URL``, ``MIKRO_TOKEN``, ...) or a config file
    in the working directory (``mikro.yaml``, ``mikro.yml``, ``mikro.toml`` or ``fakts.yaml``); see
    :mod:`mikro._config`. Raises :class:`mikro.ConfigurationError` when no URL or token is found.
    ``timeout`` (seconds, default 30) bounds each request and the time spent retrying it;
    ``retries`` (default 8: backing off for about half a minute, within ``timeout``, longer than a
    server restart) is how many times a retry-safe request is sent again.
    """
    config = load_config(
        url=url,
        token=token,
        timeout=timeout,
        retries=retries,
        max_connections=max_connections,
        max_threads=max_threads,
    )
    return Mikro(config)
