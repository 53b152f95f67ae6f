"""SQLAlchemy tables of the reference server.

The database's tables come from the Alembic revisions in ``migrations/versions`` (``mikro.server._migrate``):
a change here needs a new revision (tests/server/test_migrations.py fails until it has one)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mikro.server._json import loads

__all__ = [
    "Base",
    "Dataset",
    "Event",
    "Experiment",
    "FileRow",
    "GrantRecord",
    "IdempotencyRecord",
    "Meta",
    "Metric",
    "ObjectTag",
    "Representation",
    "Roi",
    "Sample",
    "Store",
    "TableRow",
    "Thumbnail",
    "User",
    "file_datasets",
    "file_experiments",
    "file_representations",
    "file_samples",
    "listed_columns",
    "representation_experiments",
    "representation_origins",
    "table_origins",
    "utcnow",
]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class JSONValue(TypeDecorator[Any]):
    """Any JSON value, read back as it was written (``800.0`` stays a float).

    On SQLite a column declared ``JSON`` has NUMERIC affinity, which turns the text ``800.0`` into the
    integer 800; there the value is kept as TEXT holding the JSON document instead.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "sqlite" and value is not None:
            return json.dumps(value, allow_nan=False)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        # A database made before this type kept numbers as numbers: those are read as they are.
        if dialect.name == "sqlite" and isinstance(value, str):
            return loads(value)
        return value


# SQLite would otherwise hand a deleted row's id to the next row: ids (and event cursors) must never
# be reused, or a client holding an old id would silently get another object.
_NO_ID_REUSE: dict[str, Any] = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


#: ``Column.info`` key of columns too large to read with every row (listing, relations).
_BLOB = "blob"


def listed_columns(model: Any) -> tuple[Column[Any], ...]:
    """The columns of ``model``'s table that plain row reads select: all but its blobs."""
    return _listed_columns(model.__table__)


@functools.cache
def _listed_columns(table: Table) -> tuple[Column[Any], ...]:
    return tuple(column for column in table.columns if not column.info.get(_BLOB))


class User(Base):
    __tablename__ = "users"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    # sha256 hex of the bearer token: a leaked database does not leak usable tokens.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # This user's event cursors (``Event.owner_seq``): the newest handed out, and how far the pruned
    # event log reached. Kept here, not derived from the events, so pruning never lets a cursor repeat.
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    events_pruned_through: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Owned:
    __table_args__: Any = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Store(Owned, Base):
    """A key prefix on the object store reserved by ``requestUpload`` (kind zarr, parquet or media)."""

    __tablename__ = "stores"
    kind: Mapped[str] = mapped_column(String(16))
    bucket: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    path: Mapped[str] = mapped_column(Text)
    populated: Mapped[bool] = mapped_column(Boolean, default=False)
    shape: Mapped[list[Any] | None] = mapped_column(default=None)
    chunks: Mapped[list[Any] | None] = mapped_column(default=None)
    shards: Mapped[list[Any] | None] = mapped_column(default=None)
    dtype: Mapped[str | None] = mapped_column(String(64), default=None)
    dimension_names: Mapped[list[Any] | None] = mapped_column(default=None)
    version: Mapped[str] = mapped_column(String(16), default="3")
    #: The image array's path inside the store's group (``"0"``: level 0 of an OME-Zarr image; ``""``
    #: when the store is the array itself); None until the upload is finished.
    array_path: Mapped[str | None] = mapped_column(Text, default=None)
    #: Every resolution level: ``[{path, shape, chunks, shards, scale}]`` (level 0 first; ``scale`` is the
    #: downsampling factor per dim relative to level 0); None until the upload is finished.
    levels: Mapped[list[Any] | None] = mapped_column(default=None)


class Sample(Owned, Base):
    __tablename__ = "samples"
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)


class Experiment(Owned, Base):
    __tablename__ = "experiments"
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)


class Dataset(Owned, Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True, default=None
    )


class Representation(Owned, Base):
    __tablename__ = "representations"
    name: Mapped[str] = mapped_column(Text)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), unique=True)
    shape: Mapped[list[Any]] = mapped_column()
    dims: Mapped[list[Any]] = mapped_column()
    dtype: Mapped[str] = mapped_column(String(64))
    variety: Mapped[str] = mapped_column(String(16))
    sample_id: Mapped[int | None] = mapped_column(
        ForeignKey("samples.id", ondelete="SET NULL"), index=True, default=None
    )
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True, default=None
    )
    tags: Mapped[list[Any]] = mapped_column(default=list)
    channels: Mapped[list[Any]] = mapped_column(default=list)
    physical_size: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    acquisition_date: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Where an ingested image came from: its file's content hash and the scene of that file.
    source_fingerprint: Mapped[str | None] = mapped_column(String(128), index=True, default=None)
    source_scene: Mapped[int | None] = mapped_column(default=None)
    source_scene_name: Mapped[str | None] = mapped_column(Text, default=None)
    source_scene_count: Mapped[int | None] = mapped_column(default=None)
    acquisition: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # The File this image was ingested from (kept as it was); the image outlives it.
    original_file_id: Mapped[int | None] = mapped_column(
        ForeignKey("files.id", ondelete="SET NULL"), index=True, default=None
    )


representation_experiments = Table(
    "representation_experiments",
    Base.metadata,
    Column("representation_id", ForeignKey("representations.id", ondelete="CASCADE"), primary_key=True),
    Column("experiment_id", ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_representation_experiments_experiment", "experiment_id"),
)

# Provenance: ``derived_id`` was computed from ``origin_id``.
representation_origins = Table(
    "representation_origins",
    Base.metadata,
    Column("derived_id", ForeignKey("representations.id", ondelete="CASCADE"), primary_key=True),
    Column("origin_id", ForeignKey("representations.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_representation_origins_origin", "origin_id"),
)


class Roi(Owned, Base):
    __tablename__ = "rois"
    representation_id: Mapped[int] = mapped_column(
        ForeignKey("representations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    vectors: Mapped[list[Any]] = mapped_column()
    label: Mapped[str | None] = mapped_column(Text, default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)


class Metric(Owned, Base):
    __tablename__ = "metrics"
    representation_id: Mapped[int] = mapped_column(
        ForeignKey("representations.id", ondelete="CASCADE"), index=True
    )
    roi_id: Mapped[int | None] = mapped_column(ForeignKey("rois.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(Text)
    value: Mapped[Any] = mapped_column(JSONValue)


class TableRow(Owned, Base):
    __tablename__ = "tables"
    name: Mapped[str] = mapped_column(Text)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), unique=True)
    columns: Mapped[list[Any]] = mapped_column()
    tags: Mapped[list[Any]] = mapped_column(default=list)


table_origins = Table(
    "table_origins",
    Base.metadata,
    Column("table_id", ForeignKey("tables.id", ondelete="CASCADE"), primary_key=True),
    Column("origin_id", ForeignKey("representations.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_table_origins_origin", "origin_id"),
)


class Thumbnail(Owned, Base):
    """A small PNG of an image: its bytes kept in the database (sent with the image's registration, or
    made with ``createThumbnail``), or an object beside the image's own (``key``): for an image of one
    shard, made by the server when first read (see `_thumbnail_objects`; an older client wrote it to a
    folder store itself), so neither the client's upload nor the server's database holds tens of
    kilobytes per image."""

    __tablename__ = "thumbnails"
    representation_id: Mapped[int] = mapped_column(
        ForeignKey("representations.id", ondelete="CASCADE"), index=True
    )
    # Deferred, and left out of ``listed_columns``: only the ``png`` field reads it. None when the PNG
    # is the object at ``key``.
    png: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True, info={_BLOB: True})
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    #: The storage key of the PNG object (None: the PNG is in ``png``).
    key: Mapped[str | None] = mapped_column(Text, default=None)


class ObjectTag(Base):
    """One row per (object, tag), so "has all these tags" is an indexed query on every database.

    The object's ``tags`` JSON column keeps the user's order for reading; this table is for filtering.
    """

    __tablename__ = "object_tags"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag: Mapped[str] = mapped_column(Text, primary_key=True)
    __table_args__ = (Index("ix_object_tags_tag", "kind", "tag"),)


class Event(Base):
    """The replay log of subscriptions. The id orders every event (an admin's cursor); ``owner_seq``
    numbers the events of one owner 1, 2, 3 ... (the owner's cursor), so a cursor says nothing about
    what other users did."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stream: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[int] = mapped_column(Integer)
    # dataset id for representation events, representation id for ROI events
    scope_id: Mapped[int | None] = mapped_column(Integer, default=None)
    owner_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    owner_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    __table_args__ = (
        Index("ix_events_stream_id", "stream", "id"),
        Index("ix_events_owner_seq", "owner_id", "owner_seq", unique=True),
        _NO_ID_REUSE,
    )


class Meta(Base):
    """Small server-wide values (e.g. how far the event log was pruned)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class GrantRecord(Base):
    """Every grant handed out, with the exact policy asked from STS (audit, and tests assert on it)."""

    __tablename__ = "grants"
    __table_args__ = _NO_ID_REUSE
    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    write: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(8))
    policy: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    expires_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IdempotencyRecord(Base):
    """The stored answer to a mutation sent with an ``Idempotency-Key`` header."""

    __tablename__ = "idempotency_keys"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    __table_args__ = (UniqueConstraint("user_id", "key"),)


class FileRow(Owned, Base):
    """A file kept as it is (an original an image was ingested from, or an attachment): one object,
    ``<store key>/file``, on a MEDIA store."""

    __tablename__ = "files"
    name: Mapped[str] = mapped_column(Text)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # "<algorithm>:<hex digest>" of the bytes, computed by the uploading client.
    content_hash: Mapped[str] = mapped_column(String(160), index=True)
    media_type: Mapped[str] = mapped_column(String(255))
    tags: Mapped[list[Any]] = mapped_column(default=list)


def _file_links(name: str, other: str, column: str) -> Table:
    """A link table between files and ``other`` rows; links go with either side (ON DELETE CASCADE)."""
    return Table(
        name,
        Base.metadata,
        Column("file_id", ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
        Column(column, ForeignKey(f"{other}.id", ondelete="CASCADE"), primary_key=True),
        Index(f"ix_{name}_{column}", column),
    )


# Files attached to images, samples, experiments and datasets (an image's original is
# ``Representation.original_file_id``, not a link).
file_representations = _file_links("file_representations", "representations", "representation_id")
file_samples = _file_links("file_samples", "samples", "sample_id")
file_experiments = _file_links("file_experiments", "experiments", "experiment_id")
file_datasets = _file_links("file_datasets", "datasets", "dataset_id")


class DeletedPrefix(Base):
    """A deleted store's key prefix. Its objects were deleted with it, but a write credential issued
    before the deletion may still be valid and refill the prefix: it is swept again once every such
    credential has expired (``Settings.credential_lifetime`` after the deletion)."""

    __tablename__ = "deleted_prefixes"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    deleted_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
