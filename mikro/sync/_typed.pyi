"""Signatures of SyncMikro's blocking methods, for type checkers only. Generated: do not edit.

Written by ``python -m mikro.sync._stubgen`` from the same introspection of ``mikro.Mikro`` that builds the
methods at run time; ``tests/sync/test_typed_twins.py`` fails when the two disagree.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import xarray as xr

from mikro.api._acquisition import Acquisition, SourceMatch
from mikro.api._enums import RepresentationVariety, RoiKind, UploadKind
from mikro.api._events import RepresentationEvent, RoiEvent
from mikro.api._grant import Grant
from mikro.api._models import (
    ROI,
    Channel,
    Dataset,
    Experiment,
    File,
    Metric,
    PhysicalSize,
    Representation,
    Sample,
    Table,
    Thumbnail,
    User,
    ZarrStore,
)
from mikro.api._operations import IdLike
from mikro.client._files import FileReader, Progress
from mikro.datalayer._files import FileSource
from mikro.datalayer._grant import GrantProvider
from mikro.datalayer._layout import Compression
from mikro.datalayer._pyramid import PyramidOption
from mikro.datalayer._table import BlockingTableData, TableData
from mikro.datalayer._write import ProgressCallback
from mikro.graphql._subscriptions import SubscriptionClient
from mikro.ingest._report import IngestProgress, IngestReport
from mikro.sync._streams import SyncContextManager, SyncStream

__all__ = ["SyncMethods"]

class SyncMethods:
    """What ``SyncMikro`` has for each public method and property of ``mikro.Mikro``."""

    @property
    def is_open(self) -> bool: ...
    @property
    def local_limiter(self) -> anyio.CapacityLimiter: ...
    @property
    def subscriptions(self) -> SubscriptionClient | None: ...
    @property
    def task_group(self) -> anyio.abc.TaskGroup: ...
    @property
    def thread_limiter(self) -> anyio.CapacityLimiter: ...
    def build_pyramid(
        self, representation: IdLike, *, pyramid: PyramidOption = ..., progress: ProgressCallback | None = ...
    ) -> Representation: ...
    def compute(self, expr: Any) -> Any: ...
    def create_dataset(
        self,
        name: str,
        *,
        description: str | None = ...,
        parent: IdLike | None = ...,
        tags: Sequence[str] = ...,
    ) -> Dataset: ...
    def create_experiment(
        self, name: str, *, description: str | None = ..., tags: Sequence[str] = ...
    ) -> Experiment: ...
    def create_metric(
        self, representation: IdLike, key: str, value: Any, *, roi: IdLike | None = ...
    ) -> Metric: ...
    def create_representation(
        self,
        data: Any,
        *,
        name: str,
        dims: str | Sequence[str] | None = ...,
        sample: Any = ...,
        experiments: Iterable[Any] = ...,
        dataset: Any = ...,
        tags: Iterable[str] = ...,
        origins: Iterable[Any] = ...,
        channels: Sequence[Any] | None = ...,
        pixel_size: Any = ...,
        variety: str = ...,
        acquisition_date: dt.datetime | None = ...,
        progress: ProgressCallback | None = ...,
        compression: Compression = ...,
        max_bytes: int = ...,
        thumbnail: bool = ...,
        original_file: Any = ...,
        acquisition: Acquisition | Mapping[str, Any] | None = ...,
        source_fingerprint: str | None = ...,
        source_scene: int | None = ...,
        source_scene_name: str | None = ...,
        source_scene_count: int | None = ...,
        limiter: anyio.CapacityLimiter | None = ...,
        pyramid: PyramidOption = ...,
    ) -> Representation: ...
    def create_representations(self, items: Iterable[Mapping[str, Any]]) -> list[Representation]: ...
    def create_roi(
        self,
        representation: IdLike,
        kind: RoiKind | str,
        vectors: Iterable[Iterable[float]],
        *,
        label: str | None = ...,
        tags: Sequence[str] = ...,
    ) -> ROI: ...
    def create_sample(
        self, name: str, *, description: str | None = ..., tags: Sequence[str] = ...
    ) -> Sample: ...
    def create_table(
        self, table: Any, *, name: str, origins: Iterable[Any] = ..., tags: Iterable[str] = ...
    ) -> Table: ...
    def create_thumbnail(self, representation: IdLike, png: bytes) -> Thumbnail: ...
    def delete_dataset(self, dataset: IdLike, *, recursive: bool = ...) -> str: ...
    def delete_experiment(self, experiment: IdLike) -> str: ...
    def delete_file(self, file: IdLike) -> str: ...
    def delete_metric(self, metric: IdLike) -> str: ...
    def delete_representation(self, representation: IdLike) -> str: ...
    def delete_roi(self, roi: IdLike) -> str: ...
    def delete_sample(self, sample: IdLike) -> str: ...
    def delete_table(self, table: IdLike) -> str: ...
    def delete_thumbnail(self, thumbnail: IdLike) -> str: ...
    def download_file(
        self, file: File | IdLike, path: str | os.PathLike[str], *, progress: Progress | None = ...
    ) -> Path: ...
    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = ...,
        *,
        operation_name: str | None = ...,
        idempotency_key: str | None = ...,
    ) -> dict[str, Any]: ...
    def finish_upload(self, store: IdLike) -> ZarrStore: ...
    def get_dataset(self, id: IdLike) -> Dataset: ...
    def get_experiment(self, id: IdLike) -> Experiment: ...
    def get_file(self, id: IdLike) -> File: ...
    def get_metric(self, id: IdLike) -> Metric: ...
    def get_representation(self, id: IdLike) -> Representation: ...
    def get_roi(self, id: IdLike) -> ROI: ...
    def get_sample(self, id: IdLike) -> Sample: ...
    def get_table(self, id: IdLike) -> Table: ...
    def get_thumbnail(self, id: IdLike) -> Thumbnail: ...
    def get_zarr_store(self, id: IdLike) -> ZarrStore: ...
    def grant_provider(self, store_id: IdLike, write: bool = ...) -> GrantProvider: ...
    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        dataset: Any = ...,
        sample: Any = ...,
        tags: Iterable[str] = ...,
        concurrency: int = ...,
        keep_original: bool = ...,
        on_progress: Callable[[IngestProgress], None] | None = ...,
        dry_run: bool = ...,
        cluster: Any = ...,
        compression: Compression = ...,
        pyramid: PyramidOption = ...,
    ) -> IngestReport: ...
    def iter_datasets(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        parent: IdLike | None = ...,
        page_size: int = ...,
    ) -> Iterator[Dataset]: ...
    def iter_experiments(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        page_size: int = ...,
    ) -> Iterator[Experiment]: ...
    def iter_files(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        sample: IdLike | None = ...,
        experiment: IdLike | None = ...,
        dataset: IdLike | None = ...,
        content_hash: str | None = ...,
        content_hashes: Sequence[str] | None = ...,
        page_size: int = ...,
    ) -> Iterator[File]: ...
    def iter_metrics(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        roi: IdLike | None = ...,
        key: str | None = ...,
        page_size: int = ...,
    ) -> Iterator[Metric]: ...
    def iter_representations(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        sample: IdLike | None = ...,
        experiment: IdLike | None = ...,
        dataset: IdLike | None = ...,
        derived_from: IdLike | None = ...,
        variety: RepresentationVariety | str | None = ...,
        page_size: int = ...,
        source_fingerprint: str | None = ...,
    ) -> Iterator[Representation]: ...
    def iter_rois(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        kind: RoiKind | str | None = ...,
        page_size: int = ...,
    ) -> Iterator[ROI]: ...
    def iter_samples(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        page_size: int = ...,
    ) -> Iterator[Sample]: ...
    def iter_tables(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        origin: IdLike | None = ...,
        page_size: int = ...,
    ) -> Iterator[Table]: ...
    def iter_thumbnails(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        page_size: int = ...,
    ) -> Iterator[Thumbnail]: ...
    def legacy_source_fingerprints(self) -> bool: ...
    def list_datasets(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        parent: IdLike | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[Dataset]: ...
    def list_experiments(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[Experiment]: ...
    def list_files(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        sample: IdLike | None = ...,
        experiment: IdLike | None = ...,
        dataset: IdLike | None = ...,
        content_hash: str | None = ...,
        content_hashes: Sequence[str] | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[File]: ...
    def list_metrics(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        roi: IdLike | None = ...,
        key: str | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[Metric]: ...
    def list_representations(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        sample: IdLike | None = ...,
        experiment: IdLike | None = ...,
        dataset: IdLike | None = ...,
        derived_from: IdLike | None = ...,
        variety: RepresentationVariety | str | None = ...,
        offset: int = ...,
        limit: int = ...,
        source_fingerprint: str | None = ...,
    ) -> list[Representation]: ...
    def list_rois(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        kind: RoiKind | str | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[ROI]: ...
    def list_samples(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[Sample]: ...
    def list_tables(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        name_contains: str | None = ...,
        tags: Sequence[str] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        origin: IdLike | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[Table]: ...
    def list_thumbnails(
        self,
        *,
        ids: Iterable[IdLike] | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        representation: IdLike | None = ...,
        offset: int = ...,
        limit: int = ...,
    ) -> list[Thumbnail]: ...
    def me(self) -> User: ...
    def open_file(self, file: File | IdLike) -> FileReader: ...
    def open_representation_data(self, rep: Representation, level: int = ...) -> xr.DataArray: ...
    def open_table_data(self, table: Table) -> TableData | BlockingTableData: ...
    def release_uploads(self, stores: Iterable[IdLike]) -> list[str]: ...
    def request_access(self, store: IdLike, write: bool = ...) -> Grant: ...
    def request_upload(self, kind: UploadKind | str = ...) -> Grant: ...
    def request_uploads(self, count: int, kind: UploadKind | str = ...) -> list[Grant]: ...
    def search_datasets(self, text: str, *, offset: int = ..., limit: int = ...) -> list[Dataset]: ...
    def search_experiments(self, text: str, *, offset: int = ..., limit: int = ...) -> list[Experiment]: ...
    def search_files(self, text: str, *, offset: int = ..., limit: int = ...) -> list[File]: ...
    def search_metrics(self, text: str, *, offset: int = ..., limit: int = ...) -> list[Metric]: ...
    def search_representations(
        self, text: str, *, offset: int = ..., limit: int = ...
    ) -> list[Representation]: ...
    def search_rois(self, text: str, *, offset: int = ..., limit: int = ...) -> list[ROI]: ...
    def search_samples(self, text: str, *, offset: int = ..., limit: int = ...) -> list[Sample]: ...
    def search_tables(self, text: str, *, offset: int = ..., limit: int = ...) -> list[Table]: ...
    def sources_ingested(self, fingerprints: Sequence[str]) -> list[SourceMatch]: ...
    def thumbnail_png(self, thumbnail: IdLike) -> bytes: ...
    def update_dataset(
        self,
        dataset: IdLike,
        *,
        name: str | None = ...,
        description: str | None = ...,
        parent: IdLike | None = ...,
        tags: Sequence[str] | None = ...,
    ) -> Dataset: ...
    def update_experiment(
        self,
        experiment: IdLike,
        *,
        name: str | None = ...,
        description: str | None = ...,
        tags: Sequence[str] | None = ...,
    ) -> Experiment: ...
    def update_file(
        self,
        file: IdLike,
        *,
        name: str | None = ...,
        media_type: str | None = ...,
        representations: Iterable[IdLike] | None = ...,
        samples: Iterable[IdLike] | None = ...,
        experiments: Iterable[IdLike] | None = ...,
        datasets: Iterable[IdLike] | None = ...,
        tags: Sequence[str] | None = ...,
    ) -> File: ...
    def update_metric(self, metric: IdLike, *, key: str | None = ..., value: Any = ...) -> Metric: ...
    def update_representation(
        self,
        representation: IdLike,
        *,
        name: str | None = ...,
        variety: RepresentationVariety | str | None = ...,
        sample: IdLike | None = ...,
        experiments: Iterable[IdLike] | None = ...,
        dataset: IdLike | None = ...,
        tags: Sequence[str] | None = ...,
        channels: Sequence[Channel | Mapping[str, Any]] | None = ...,
        physical_size: PhysicalSize | Mapping[str, float] | None = ...,
        acquisition_date: dt.datetime | None = ...,
    ) -> Representation: ...
    def update_roi(
        self,
        roi: IdLike,
        *,
        kind: RoiKind | str | None = ...,
        vectors: Iterable[Iterable[float]] | None = ...,
        label: str | None = ...,
        tags: Sequence[str] | None = ...,
    ) -> ROI: ...
    def update_sample(
        self,
        sample: IdLike,
        *,
        name: str | None = ...,
        description: str | None = ...,
        tags: Sequence[str] | None = ...,
    ) -> Sample: ...
    def update_table(
        self,
        table: IdLike,
        *,
        name: str | None = ...,
        origins: Iterable[IdLike] | None = ...,
        tags: Sequence[str] | None = ...,
    ) -> Table: ...
    def update_thumbnail(self, thumbnail: IdLike, png: bytes) -> Thumbnail: ...
    def upload_file(
        self,
        path_or_bytes: FileSource,
        *,
        name: str | None = ...,
        media_type: str | None = ...,
        representations: Iterable[IdLike] = ...,
        samples: Iterable[IdLike] = ...,
        experiments: Iterable[IdLike] = ...,
        datasets: Iterable[IdLike] = ...,
        tags: Iterable[str] = ...,
        progress: Progress | None = ...,
    ) -> File: ...
    def watch_representations(
        self, dataset: IdLike | None = ..., *, after: int | None = ..., buffer: int | None = ...
    ) -> SyncContextManager[SyncStream[RepresentationEvent]]: ...
    def watch_rois(
        self, representation: IdLike, *, after: int | None = ..., buffer: int | None = ...
    ) -> SyncContextManager[SyncStream[RoiEvent]]: ...
