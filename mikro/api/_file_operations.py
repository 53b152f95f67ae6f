"""The typed operations on files (``mikro/api/documents/file.graphql``), mixed into the session.

Their bytes move through the session's data plane (``upload_file``, ``download_file``, ``open_file``);
these read and change the records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from mikro.api._models import File
from mikro.api._operations import (
    DEFAULT_PAGE_SIZE,
    IdLike,
    Operations,
    _camel_input,
    _id,
)

__all__ = ["FileOperations"]


class FileOperations(Operations):
    """``get_file``, ``list_files``, ``iter_files``, ``update_file``, ``delete_file``."""

    async def _create_file_row(self, input: Mapping[str, Any]) -> File:
        """createFile with ``input`` as a FileInput (snake_case or camelCase keys; ids or models)."""
        return await self._one("CreateFile", File, {"input": _camel_input(input)})

    async def _create_file_rows(self, inputs: Sequence[Mapping[str, Any]]) -> list[File]:
        """createFiles: several FileInputs in one request and one transaction."""
        return await self._created_files("CreateFiles", inputs)

    async def _create_file_records(self, inputs: Sequence[Mapping[str, Any]]) -> list[str]:
        """createFiles for new files with no links (an ingest's originals), answering only their ids:
        their relations (empty) cost the server a relation load each, their fields the client a model."""
        return await self._created_ids("CreateFileRecords", inputs)

    async def _created_files(self, operation: str, inputs: Sequence[Mapping[str, Any]]) -> list[File]:
        return await self._listed_answer(operation, File, {"inputs": [_camel_input(i) for i in inputs]})

    async def get_file(self, id: IdLike) -> File:
        return await self._one("GetFile", File, {"id": _id(id)})

    async def list_files(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        sample: IdLike | None = None,
        experiment: IdLike | None = None,
        dataset: IdLike | None = None,
        content_hash: str | None = None,
        content_hashes: Sequence[str] | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[File]:
        """Your files; ``representation=`` finds the files attached to an image and its original,
        ``content_hashes=`` those with any of these hashes (at most 2000)."""
        return await self._listed("ListFiles", File, locals())

    def iter_files(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        sample: IdLike | None = None,
        experiment: IdLike | None = None,
        dataset: IdLike | None = None,
        content_hash: str | None = None,
        content_hashes: Sequence[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[File]:
        """Every matching file, fetched ``page_size`` at a time."""
        return self._paged(self.list_files, locals())

    async def search_files(self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE) -> list[File]:
        return await self.list_files(name_contains=text, offset=offset, limit=limit)

    async def update_file(
        self,
        file: IdLike,
        *,
        name: str | None = None,
        media_type: str | None = None,
        representations: Iterable[IdLike] | None = None,
        samples: Iterable[IdLike] | None = None,
        experiments: Iterable[IdLike] | None = None,
        datasets: Iterable[IdLike] | None = None,
        tags: Sequence[str] | None = None,
    ) -> File:
        """Change what is given: a list of links replaces the file's links of that kind."""
        return await self._updated("UpdateFile", File, "file", locals())

    async def delete_file(self, file: IdLike) -> str:
        """Delete the file and its bytes; images made from it stay (their ``original_file`` goes)."""
        return await self._delete("DeleteFile", file)
