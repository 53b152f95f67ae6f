"""The object store behind the server: a local folder or S3, and the grants that reach one prefix.

Every method here is blocking (obstore's sync API, boto3): callers run them in worker threads, because
obstore's async API needs asyncio and aborted processes at exit (see DESIGN.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import json
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import obstore
from obstore.exceptions import NotFoundError as ObjectNotFound
from obstore.store import LocalStore, S3Store

from mikro.server._errors import BadUserInput
from mikro.server._settings import MIN_STS_SECONDS, Settings

__all__ = ["GrantData", "ObjectStorage", "prefix_policy"]

StoreKindName = Literal["FILE", "S3"]

#: At most this many upload stores share one set of temporary credentials (one STS call).
UPLOAD_BATCH_STORES = 256


@dataclass
class _UploadBatch:
    """Temporary write credentials for ``<prefix>/*``, handed to each new upload store under it.

    One STS AssumeRole per store cost the S3 server as much as a small object upload per image; a batch
    costs one per ``UPLOAD_BATCH_STORES`` stores or per half credential lifetime, whichever comes first.
    """

    prefix: str
    grant: GrantData
    stores: int = 0


@dataclass(frozen=True)
class GrantData:
    kind: StoreKindName
    bucket: str
    prefix: str
    path: str
    write: bool
    expires_at: dt.datetime
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    policy: dict[str, Any] | None = None


def prefix_policy(bucket: str, prefix: str, *, write: bool, until: dt.datetime) -> dict[str, Any]:
    """The inline session policy that limits temporary credentials to ``<bucket>/<prefix>/`` and to the
    time before ``until`` (the grant's ``expiresAt``: STS's own expiry is at least 15 minutes away)."""
    object_actions = ["s3:GetObject"]
    if write:
        # Multipart uploads are authorised by PutObject; aborting one needs its own action.
        object_actions += ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    # Whole seconds, rounded down: the condition never ends after expiresAt.
    before = {"DateLessThan": {"aws:CurrentTime": until.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ObjectsUnderPrefix",
                "Effect": "Allow",
                "Action": object_actions,
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"],
                "Condition": before,
            },
            {
                "Sid": "ListPrefix",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}, **before},
            },
        ],
    }


def _check_key(key: str) -> None:
    parts = key.split("/")
    if "\0" in key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise BadUserInput(f"invalid object key {key!r}")


T = TypeVar("T")

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO a client planted must not hang a worker thread.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def _read_below(root: str, key: str) -> bytes | None:
    return _below(root, key, _read_all)


def _read_all(fd: int) -> bytes:
    with os.fdopen(os.dup(fd), "rb") as f:
        return f.read()


def _size_below(root: str, key: str) -> int | None:
    return _below(root, key, lambda fd: os.fstat(fd).st_size)


def _below(root: str, key: str, use: Callable[[int], T]) -> T | None:
    """Read ``root/key`` without following a symbolic link anywhere below ``root`` (a folder store's
    clients write its directories themselves, and could otherwise point the server at any file it can
    read: another user's store, or the server's own secrets). None if there is no such regular file."""
    *directories, name = key.split("/")
    try:
        with _directory(root, directories, key) as parent:
            fd = os.open(name, _FILE, dir_fd=parent)
            try:
                return use(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
            finally:
                os.close(fd)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _replace_below(root: str, key: str, data: bytes) -> None:
    """Write ``root/key`` whole, as a temporary file renamed into place (readers see the old bytes or
    the new), without following a symbolic link below ``root`` (see `_below`): not even the one a
    client might leave at ``key`` itself, which the rename replaces. Its directory must exist."""
    *directories, name = key.split("/")
    temp = f".{name}.{uuid.uuid4().hex}"
    with _directory(root, directories, key) as parent:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=parent)
            raise


@contextlib.contextmanager
def _directory(root: str, directories: list[str], key: str) -> Iterator[int]:
    """A descriptor of ``root/<directories>``, reached without following a link (BAD_USER_INPUT
    naming ``key`` if one is met, at the directories or at what the caller opens in it)."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for directory in directories:
            try:
                fds.append(os.open(directory, _DIRECTORY, dir_fd=fds[-1]))
            except NotADirectoryError:
                # Linux says ENOTDIR, not ELOOP, for a link opened as a directory without following it.
                if stat.S_ISLNK(os.stat(directory, dir_fd=fds[-1], follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, "symbolic link") from None
                raise
        yield fds[-1]
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadUserInput(
                f"{key} passes through a symbolic link: a folder store never follows links"
            ) from None
        raise
    finally:
        for fd in fds:
            os.close(fd)


class ObjectStorage:
    """Where stores live. ``kind`` is FILE (``<data-dir>/objects``) or S3 (a bucket, STS grants)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sts: Any = None
        self._sts_lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self._batches: dict[tuple[int, str], _UploadBatch] = {}
        if settings.uses_s3:
            if not (settings.s3_bucket and settings.s3_access_key and settings.s3_secret_key):
                raise ValueError("S3 needs s3_bucket, s3_access_key and s3_secret_key")
            self.kind: StoreKindName = "S3"
            self.bucket = settings.s3_bucket
            allow_http = bool(settings.s3_endpoint and settings.s3_endpoint.startswith("http://"))
            self._store: S3Store | LocalStore = S3Store(
                settings.s3_bucket,
                endpoint=settings.s3_endpoint,
                access_key_id=settings.s3_access_key.get_secret_value(),
                secret_access_key=settings.s3_secret_key.get_secret_value(),
                region=settings.s3_region,
                client_options={"allow_http": allow_http},
            )
        else:
            self.kind = "FILE"
            root = settings.objects_dir
            root.mkdir(parents=True, exist_ok=True)
            self.bucket = str(root)
            self._store = LocalStore(root)

    @staticmethod
    def new_key(upload_kind: str) -> str:
        return f"{upload_kind.lower()}/{uuid.uuid4().hex}"

    def path_of(self, key: str) -> str:
        """Where a key lives, as a user would type it: a local directory or an ``s3://`` URL."""
        if self.kind == "FILE":
            return str(Path(self.bucket) / key)
        return f"s3://{self.bucket}/{key}"

    def prepare(self, key: str) -> None:
        """Make the prefix writable (a folder store needs the directory to exist)."""
        if self.kind == "FILE":
            Path(self.path_of(key)).mkdir(parents=True, exist_ok=True)

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""
        _check_key(key)
        if self.kind == "FILE":
            return _read_below(self.bucket, key)
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except (ObjectNotFound, FileNotFoundError):
            return None

    def replace(self, key: str, data: bytes) -> None:
        """Write one object whole: readers see the old bytes or the new ones (a put on S3; a temporary
        file renamed into place in a folder store, whose directory must exist, no link followed)."""
        _check_key(key)
        if self.kind == "FILE":
            _replace_below(self.bucket, key, data)
            return
        obstore.put(self._store, key, data)

    def exists(self, key: str) -> bool:
        return self.size_of(key) is not None

    def size_of(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is no such object (one HEAD request)."""
        _check_key(key)
        if self.kind == "FILE":
            return _size_below(self.bucket, key)
        try:
            return int(obstore.head(self._store, key)["size"])
        except (ObjectNotFound, FileNotFoundError):
            return None

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix/``."""
        _check_key(prefix)
        if self.kind == "FILE":
            # rmtree removes links it meets rather than following them.
            shutil.rmtree(self.path_of(prefix), ignore_errors=True)
            return
        for batch in obstore.list(self._store, prefix=prefix + "/", chunk_size=1000):
            paths = [meta["path"] for meta in batch]
            if paths:
                obstore.delete(self._store, paths)

    def new_upload(self, upload_kind: str, user_id: int, *, session_name: str) -> tuple[str, GrantData]:
        """A fresh key for a new store of ``user_id`` and a write grant for it (blocking).

        On S3 the key lies in the user's current upload batch, ``<kind>/<batch>/<store>``, and the grant
        carries the batch's credentials: scoped to the batch's prefix, so they reach the stores this
        user reserved within the credentials' lifetime (at most ``UPLOAD_BATCH_STORES``) and nothing else.
        """
        # Image stores end in .zarr: napari and bioio pick their OME-Zarr reader by that suffix.
        suffix = ".zarr" if upload_kind == "ZARR" else ""
        if self.kind == "FILE":
            key = self.new_key(upload_kind) + suffix
            return key, self.grant(key, write=True, session_name=session_name)
        with self._batch_lock:
            batch = self._live_batch((user_id, upload_kind))
            if batch is None or batch.stores >= UPLOAD_BATCH_STORES:
                prefix = self.new_key(upload_kind)
                batch = _UploadBatch(prefix, self._s3_grant(prefix, write=True, session_name=session_name))
                self._batches[(user_id, upload_kind)] = batch
            batch.stores += 1
        key = f"{batch.prefix}/{uuid.uuid4().hex}{suffix}"
        return key, self._for_key(batch.grant, key)

    def grant(self, key: str, *, write: bool, session_name: str, user_id: int | None = None) -> GrantData:
        """Where ``key`` is and how to reach it for ``grant_ttl`` seconds (temporary credentials on S3).

        A write grant for a store of ``user_id``'s live upload batch reuses the batch's credentials.
        """
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(seconds=self.settings.grant_ttl)
        if self.kind == "FILE":
            return GrantData(
                kind="FILE",
                bucket=self.bucket,
                prefix=key,
                path=self.path_of(key),
                write=write,
                expires_at=expires,
            )
        if write and user_id is not None:
            with self._batch_lock:
                for (owner, kind), batch in list(self._batches.items()):
                    covered = owner == user_id and key.startswith(batch.prefix + "/")
                    if covered and self._live_batch((owner, kind)) is not None:
                        return self._for_key(batch.grant, key)
        return self._s3_grant(key, write=write, session_name=session_name)

    def _live_batch(self, batch_key: tuple[int, str]) -> _UploadBatch | None:
        # A batch's credentials are handed out while they have at least half of grant_ttl left, so every
        # grant made from them lives at least that long.
        batch = self._batches.get(batch_key)
        if batch is None:
            return None
        left = (batch.grant.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
        if left < self.settings.grant_ttl / 2:
            del self._batches[batch_key]
            return None
        return batch

    def _for_key(self, grant: GrantData, key: str) -> GrantData:
        return dataclasses.replace(grant, prefix=key, path=self.path_of(key))

    def _s3_grant(self, key: str, *, write: bool, session_name: str) -> GrantData:
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(seconds=self.settings.grant_ttl)
        policy = prefix_policy(self.bucket, key, write=write, until=expires)
        creds = self._assume_role(policy, session_name)
        expiration: dt.datetime = creds["Expiration"]
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=dt.UTC)
        # The credentials work until the earlier of STS's expiry and the policy's time condition.
        expires = min(expiration, expires)
        return GrantData(
            kind="S3",
            bucket=self.bucket,
            prefix=key,
            path=self.path_of(key),
            write=write,
            expires_at=expires,
            endpoint=self.settings.s3_endpoint,
            region=self.settings.s3_region,
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds.get("SessionToken"),
            policy=policy,
        )

    def _assume_role(self, policy: dict[str, Any], session_name: str) -> dict[str, Any]:
        client = self._sts_client()
        response = client.assume_role(
            RoleArn=self.settings.s3_role_arn,
            RoleSessionName=session_name[:64],
            Policy=json.dumps(policy),
            # STS refuses less than 15 minutes: a shorter grant_ttl is the policy's time condition
            # (allowed only where the S3 server enforces it, see Settings.s3_enforces_session_time).
            DurationSeconds=max(self.settings.grant_ttl, MIN_STS_SECONDS),
        )
        return dict(response["Credentials"])

    def _sts_client(self) -> Any:
        with self._sts_lock:
            if self._sts is None:
                import boto3

                s = self.settings
                assert s.s3_access_key is not None and s.s3_secret_key is not None
                self._sts = boto3.client(
                    "sts",
                    endpoint_url=s.sts_endpoint or s.s3_endpoint,
                    aws_access_key_id=s.s3_access_key.get_secret_value(),
                    aws_secret_access_key=s.s3_secret_key.get_secret_value(),
                    region_name=s.s3_region,
                )
            return self._sts
