"""Tables as parquet objects: pyarrow Table or pandas DataFrame in, pyarrow Table out."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from mikro._exceptions import StorageError, ValidationError
from mikro.datalayer._store import GrantedStore

__all__ = [
    "TABLE_KEY",
    "BlockingTableData",
    "TableData",
    "TableWritten",
    "read_table",
    "to_arrow",
    "write_table",
]

#: The parquet object's key under a PARQUET grant's prefix.
TABLE_KEY = "table.parquet"


@dataclass(frozen=True)
class TableWritten:
    key: str
    nbytes: int
    num_rows: int
    columns: tuple[tuple[str, str], ...]


def to_arrow(table: Any) -> pa.Table:
    """A pyarrow Table from a pyarrow Table or a pandas DataFrame (the index is kept if it is named)."""
    if isinstance(table, pa.Table):
        return table
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is optional
        pd = None
    if pd is not None and isinstance(table, pd.DataFrame):
        try:
            return pa.Table.from_pandas(table, preserve_index=None)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError(f"this DataFrame cannot be stored as parquet: {exc}") from exc
    raise ValidationError(
        f"a table must be a pyarrow Table or a pandas DataFrame, not {type(table).__name__}"
    )


def _encode(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


async def write_table(
    store: GrantedStore, table: Any, *, key: str = TABLE_KEY, limiter: anyio.CapacityLimiter | None = None
) -> TableWritten:
    """Validate (on the loop: cheap), encode and put one parquet object (in a worker thread)."""
    arrow = to_arrow(table)

    def run() -> int:
        payload = _encode(arrow)
        store.put(key, payload)
        return len(payload)

    nbytes = await anyio.to_thread.run_sync(run, limiter=limiter)
    return TableWritten(
        key=key,
        nbytes=nbytes,
        num_rows=arrow.num_rows,
        columns=tuple((f.name, str(f.type)) for f in arrow.schema),
    )


def read_table(store: GrantedStore, *, key: str = TABLE_KEY) -> pa.Table:
    """The parquet object as a pyarrow Table (blocking: call it from a worker thread)."""
    raw = store.get(key)
    assert raw is not None
    try:
        return pq.read_table(pa.BufferReader(raw))
    except pa.ArrowInvalid as exc:
        raise StorageError(f"{key!r} is not a readable parquet file: {exc}") from exc


class TableData:
    """A stored table, read on request: ``await data.arrow()`` / ``await data.pandas()``.

    Reading runs in a worker thread. ``read()`` / ``to_pandas()`` are the blocking spellings for scripts
    (inside ``async def`` they would block the event loop).
    """

    def __init__(
        self, store: GrantedStore, *, key: str = TABLE_KEY, limiter: anyio.CapacityLimiter | None = None
    ) -> None:
        self.store = store
        self.key = key
        self._limiter = limiter

    def read(self) -> pa.Table:
        return read_table(self.store, key=self.key)

    def to_pandas(self) -> Any:
        return self.read().to_pandas()

    async def arrow(self) -> pa.Table:
        return await anyio.to_thread.run_sync(self.read, limiter=self._limiter)

    async def pandas(self) -> Any:
        return await anyio.to_thread.run_sync(self.to_pandas, limiter=self._limiter)

    def blocking(self) -> BlockingTableData:
        """The same table with blocking ``arrow()`` / ``pandas()``, for code outside the event loop."""
        return BlockingTableData(self.store, key=self.key)

    def __repr__(self) -> str:
        return f"TableData(key={self.key!r})"


class BlockingTableData:
    """A stored table as the sync facade hands it out: ``data.arrow()`` / ``data.pandas()`` block."""

    def __init__(self, store: GrantedStore, *, key: str = TABLE_KEY) -> None:
        self.store = store
        self.key = key

    def arrow(self) -> pa.Table:
        return read_table(self.store, key=self.key)

    def pandas(self) -> Any:
        return self.arrow().to_pandas()

    read = arrow
    to_pandas = pandas

    def __repr__(self) -> str:
        return f"BlockingTableData(key={self.key!r})"
