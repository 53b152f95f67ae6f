"""Bearer tokens: hashing, the token cache, user creation, token rotation and the admin token.

The token cache: every request carries a token, and looking its user up costs a database round trip,
so a server process remembers ``token hash -> user`` for ``auth_cache_ttl`` seconds (default 30; 0
turns the cache off), at most ``auth_cache_size`` entries. Unknown tokens are never cached, so a user
added a moment ago is found at once. When a token is revoked (``mikro user rotate-token``) or a user
changes, the change touches ``<data-dir>/auth-epoch``; every process serving that data dir checks the
file's identity on each request (one ``stat``) and drops its whole cache when it changed, so the old
token is refused by the very next request, in this process and in any other worker on the same
machine.

Caveat, several workers: a worker that does not share the data dir (PostgreSQL, servers on other
machines, or a change made with another ``--data-dir``) does not see the epoch file change and may
accept a revoked token for up to ``auth_cache_ttl`` seconds. Lower the TTL (or set it to 0) there.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from mikro.server._database import Database
from mikro.server._errors import Conflict, NotFound
from mikro.server._models import User
from mikro.server._settings import Settings

__all__ = [
    "AuthUser",
    "Authenticator",
    "TokenCache",
    "bump_auth_epoch",
    "create_user",
    "ensure_admin",
    "hash_token",
    "new_token",
    "rotate_token",
    "token_from_header",
]

ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class AuthUser:
    """The caller of a request."""

    id: int
    username: str
    is_admin: bool

    def can_see(self, creator_id: int) -> bool:
        return self.is_admin or creator_id == self.id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def bump_auth_epoch(path: Path) -> None:
    """Tell every process serving this data dir that users or tokens changed.

    The file is replaced, not rewritten: a new inode is a change that no timestamp granularity can
    hide, and readers never see it half-written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".auth-epoch-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(8) + "\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class TokenCache:
    """``token hash -> AuthUser`` for ``ttl`` seconds, at most ``size`` entries (least recently used
    leave first), dropped at once when the epoch file changes or ``clear()`` is called."""

    def __init__(
        self,
        ttl: float,
        size: int,
        epoch_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._epoch_file = epoch_file
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, AuthUser]] = OrderedDict()
        self._epoch = _file_identity(epoch_file) if epoch_file is not None else None
        # Counts the times the cache was emptied; see `put`.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _check_epoch(self) -> None:
        if self._epoch_file is None:
            return
        epoch = _file_identity(self._epoch_file)
        if epoch != self._epoch:
            self._epoch = epoch
            self.clear()

    def get(self, token_hash: str) -> AuthUser | None:
        if self.ttl <= 0:
            return None
        self._check_epoch()
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        expires, user = entry
        if self._clock() >= expires:
            del self._entries[token_hash]
            return None
        self._entries.move_to_end(token_hash)
        return user

    def put(self, token_hash: str, user: AuthUser, generation: int) -> None:
        """Remember a user looked up while the cache was at ``generation``. If the cache has been
        emptied since (a token was revoked while the lookup ran), the answer may be stale: drop it."""
        if self.ttl <= 0 or self.size <= 0:
            return
        self._check_epoch()
        if generation != self.generation:
            return
        self._entries[token_hash] = (self._clock() + self.ttl, user)
        self._entries.move_to_end(token_hash)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1


class Authenticator:
    """Bearer token -> user, through a ``TokenCache`` in front of the database."""

    def __init__(self, db: Database, cache: TokenCache) -> None:
        self.db = db
        self.cache = cache

    async def authenticate(self, token: str | None) -> AuthUser | None:
        if not token:
            return None
        token_hash = hash_token(token)
        user = self.cache.get(token_hash)
        if user is not None:
            return user
        generation = self.cache.generation
        async with self.db.read() as session:
            row = await session.scalar(select(User).where(User.token_hash == token_hash))
        if row is None:
            return None
        user = AuthUser(id=row.id, username=row.username, is_admin=row.is_admin)
        self.cache.put(token_hash, user, generation)
        return user


async def create_user(db: Database, username: str, *, admin: bool = False, token: str | None = None) -> str:
    """Create a user and return its bearer token (shown once: only its hash is stored)."""
    token = token or new_token()
    try:
        async with db.write() as session:
            session.add(User(username=username, token_hash=hash_token(token), is_admin=admin))
    except IntegrityError:
        raise Conflict(f"a user named {username!r} already exists") from None
    return token


async def rotate_token(db: Database, username: str, *, epoch_file: Path | None = None) -> str:
    """Give ``username`` a new token and return it; the old one is refused from now on.

    ``epoch_file`` (``<data-dir>/auth-epoch``) is touched after the commit, so that running servers on
    that data dir drop their token caches (see the module docstring).
    """
    token = new_token()
    async with db.write() as session:
        result = await session.execute(
            update(User).where(User.username == username).values(token_hash=hash_token(token))
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"no user named {username!r}")
    if epoch_file is not None:
        bump_auth_epoch(epoch_file)
    return token


async def ensure_admin(db: Database, settings: Settings) -> Path | None:
    """Make sure the admin user exists with the configured token.

    The token is ``MIKRO_ADMIN_TOKEN`` when set, else the one in ``<data-dir>/admin-token``, else a new one
    written there (mode 0600). Returns the file's path when this call created it.
    """
    created: Path | None = None
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
    else:
        path = settings.admin_token_file
        if path.exists():
            token = path.read_text().strip()
        else:
            token = new_token()
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL + 0600 at creation: the token is never readable by others, not even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            created = path
    changed = False
    async with db.write() as session:
        admin = await session.scalar(select(User).where(User.username == ADMIN_USERNAME))
        if admin is None:
            session.add(User(username=ADMIN_USERNAME, token_hash=hash_token(token), is_admin=True))
        elif admin.token_hash != hash_token(token) or not admin.is_admin:
            admin.token_hash = hash_token(token)
            admin.is_admin = True
            changed = True
    if changed:
        # Another worker on this data dir may still hold the previous admin token in its cache.
        bump_auth_epoch(settings.auth_epoch_file)
    return created
