"""Bearer tokens: hashing, user creation and the admin token of a fresh data dir."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mikro.server._database import Database
from mikro.server._errors import Conflict
from mikro.server._models import User
from mikro.server._settings import Settings

__all__ = [
    "AuthUser",
    "authenticate",
    "create_user",
    "ensure_admin",
    "hash_token",
    "new_token",
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


async def authenticate(db: Database, token: str | None) -> AuthUser | None:
    if not token:
        return None
    async with db.read() as session:
        user = await session.scalar(select(User).where(User.token_hash == hash_token(token)))
    if user is None:
        return None
    return AuthUser(id=user.id, username=user.username, is_admin=user.is_admin)


async def create_user(db: Database, username: str, *, admin: bool = False, token: str | None = None) -> str:
    """Create a user and return its bearer token (shown once: only its hash is stored)."""
    token = token or new_token()
    try:
        async with db.write() as session:
            session.add(User(username=username, token_hash=hash_token(token), is_admin=admin))
    except IntegrityError:
        raise Conflict(f"a user named {username!r} already exists") from None
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
    async with db.write() as session:
        admin = await session.scalar(select(User).where(User.username == ADMIN_USERNAME))
        if admin is None:
            session.add(User(username=ADMIN_USERNAME, token_hash=hash_token(token), is_admin=True))
        else:
            admin.token_hash = hash_token(token)
            admin.is_admin = True
    return created
