"""Fresh storage grants from the server (``requestAccess``), in this process or in a dask worker.

`RequestAccessProvider` is the `mikro.datalayer.GrantProvider` a session hands to the datalayer. Inside
the session's process it sends ``requestAccess`` over the session's blocking HTTP client. It also
pickles, so that ``rep.data``'s dask tasks can be computed on a dask.distributed cluster: a worker process
that unpickles it asks the server itself, over one HTTP client per worker process, when the grant a
task carries is about to expire.

Pickling it copies the session's **token** (with the server URL and store id) into the pickle, and so to
every worker process the tasks reach: the user's credentials go to the user's own workers, as they would
with any other client library run there. Do not ship ``rep.data`` to a cluster you would not give your
token to.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Self

import httpx

from mikro._exceptions import GrantError, MikroError
from mikro.api import Grant, operation
from mikro.datalayer import StorageGrant
from mikro.graphql import BlockingTransport, RetryPolicy, new_idempotency_key, tls_context

__all__ = ["RequestAccessProvider", "RequestLevelsProvider"]

# One blocking HTTP client per process for unpickled providers (a dask worker serves many stores and
# tasks; each its own client would mean a connection pool per task). Closed when the process exits.
_worker_lock = threading.Lock()
_worker_clients: dict[tuple[float, str], httpx.Client] = {}


def _worker_client(timeout: float, user_agent: str) -> httpx.Client:
    with _worker_lock:
        client = _worker_clients.get((timeout, user_agent))
        if client is None:
            if not _worker_clients:
                atexit.register(_close_worker_clients)
            client = httpx.Client(
                timeout=httpx.Timeout(timeout), headers={"User-Agent": user_agent}, verify=tls_context(None)
            )
            _worker_clients[(timeout, user_agent)] = client
        return client


def _close_worker_clients() -> None:
    with _worker_lock:
        clients = list(_worker_clients.values())
        _worker_clients.clear()
    for client in clients:
        client.close()


class RequestAccessProvider:
    """A blocking, thread-safe, picklable `GrantProvider` for one store: ``requestAccess`` on each call.

    ``session`` (not pickled) is the live session whose blocking transport to use; without it (after
    unpickling, in a dask worker) the provider uses a per-process HTTP client with the same timeout,
    retry policy and error mapping. Failures raise `mikro.GrantError` with the server's or transport's
    error as ``__cause__``. Pickles carry the token (see the module docstring); ``repr`` hides it.
    Equal providers (same server, token, store and mode) share one rebuilt store in a worker.
    """

    def __init__(
        self,
        *,
        url: str,
        token: str | None,
        store_id: str,
        write: bool,
        timeout: float,
        retries: int,
        user_agent: str,
        session: Any = None,
    ) -> None:
        self.url = url
        self._token = token
        self.store_id = store_id
        self.write = write
        self.timeout = timeout
        self.retries = retries
        self.user_agent = user_agent
        self._session = session
        self._transport: BlockingTransport | None = None

    # -- identity and pickling ----------------------------------------------------------------------

    def _identity(self) -> tuple[str, str | None, str, bool]:
        return (self.url, self._token, self.store_id, self.write)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestAccessProvider):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        mode = "write" if self.write else "read"
        return f"RequestAccessProvider({self.url}, store {self.store_id}, {mode})"

    def __getstate__(self) -> dict[str, Any]:
        # The session and its HTTP client stay in this process.
        state = dict(self.__dict__)
        state["_session"] = None
        state["_transport"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    # -- requests -----------------------------------------------------------------------------------

    def _blocking_transport(self) -> BlockingTransport:
        session = self._session
        if session is not None:
            if not session.is_open:
                raise GrantError(
                    f"cannot refresh the grant for store {self.store_id}: its mikro session is closed"
                )
            transport: BlockingTransport = session.blocking_transport
            return transport
        if self._transport is None:
            self._transport = BlockingTransport(
                _worker_client(self.timeout, self.user_agent),
                self.url,
                token=self._token,
                retry=RetryPolicy(retries=self.retries, deadline=self.timeout),
                timeout=self.timeout,
            )
        return self._transport

    def _request(self) -> tuple[str, dict[str, Any]]:
        """The operation that returns a fresh grant, and its variables."""
        return "RequestAccess", {"store": self.store_id, "write": self.write}

    def __call__(self) -> StorageGrant:
        transport = self._blocking_transport()
        name, variables = self._request()
        op = operation(name)
        try:
            data = transport.execute(
                op.document, variables, operation_name=op.name, idempotency_key=new_idempotency_key()
            )
        except MikroError as exc:
            mode = "write" if self.write else "read"
            raise GrantError(f"could not get a {mode} grant for store {self.store_id}: {exc}") from exc
        field = name[0].lower() + name[1:]
        grant = Grant.model_validate(data[field], context={"session": self._session})
        return grant.to_storage_grant()


class RequestLevelsProvider(RequestAccessProvider):
    """The write grant for one pyramid build's levels prefix, renewed with ``requestLevelsUpload``.

    ``requestAccess`` cannot renew it: the image's store is finished (read-only) and the grant covers
    only the ``levels-<id>`` prefix inside it.
    """

    def __init__(self, *, prefix: str, **kwargs: Any) -> None:
        super().__init__(write=True, **kwargs)
        self.prefix = prefix

    def _identity(self) -> tuple[str, str | None, str, bool]:
        return (self.url, self._token, f"{self.store_id}/{self.prefix}", self.write)

    def __repr__(self) -> str:
        return f"RequestLevelsProvider({self.url}, store {self.store_id}, {self.prefix})"

    def _request(self) -> tuple[str, dict[str, Any]]:
        return "RequestLevelsUpload", {"store": self.store_id, "prefix": self.prefix}
