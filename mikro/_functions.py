"""Module-level ``a*`` functions (``await mikro.aget_representation(107)``) using the current session.

Each is made from the session method of the same name (minus the ``a``) by :func:`_bind`: same
parameters, same return type, same docstring, resolved on the current session at call time. A test
checks that every public async method of the session (operations, data plane, watches) has its
function here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from mikro._context import current_session
from mikro.client._mikro import Mikro

__all__ = [
    "abuild_pyramid",
    "acompute",
    "acreate_dataset",
    "acreate_experiment",
    "acreate_metric",
    "acreate_representation",
    "acreate_representations",
    "acreate_roi",
    "acreate_sample",
    "acreate_table",
    "acreate_thumbnail",
    "adelete_dataset",
    "adelete_experiment",
    "adelete_file",
    "adelete_metric",
    "adelete_representation",
    "adelete_roi",
    "adelete_sample",
    "adelete_table",
    "adelete_thumbnail",
    "adownload_file",
    "afinish_upload",
    "aget_dataset",
    "aget_experiment",
    "aget_file",
    "aget_metric",
    "aget_representation",
    "aget_roi",
    "aget_sample",
    "aget_table",
    "aget_thumbnail",
    "aget_zarr_store",
    "aingest",
    "aiter_datasets",
    "aiter_experiments",
    "aiter_files",
    "aiter_metrics",
    "aiter_representations",
    "aiter_rois",
    "aiter_samples",
    "aiter_tables",
    "aiter_thumbnails",
    "alegacy_source_fingerprints",
    "alist_datasets",
    "alist_experiments",
    "alist_files",
    "alist_metrics",
    "alist_representations",
    "alist_rois",
    "alist_samples",
    "alist_tables",
    "alist_thumbnails",
    "ame",
    "aopen_file",
    "arelease_uploads",
    "arequest_access",
    "arequest_upload",
    "arequest_uploads",
    "asearch_datasets",
    "asearch_experiments",
    "asearch_files",
    "asearch_metrics",
    "asearch_representations",
    "asearch_rois",
    "asearch_samples",
    "asearch_tables",
    "asources_ingested",
    "athumbnail_png",
    "aupdate_dataset",
    "aupdate_experiment",
    "aupdate_file",
    "aupdate_metric",
    "aupdate_representation",
    "aupdate_roi",
    "aupdate_sample",
    "aupdate_table",
    "aupdate_thumbnail",
    "aupload_file",
    "awatch_representations",
    "awatch_rois",
]

P = ParamSpec("P")
R = TypeVar("R")


def _bind(method: Callable[Concatenate[Mikro, P], R]) -> Callable[P, R]:
    """``method`` of whichever session is current when the returned function is called."""
    name = method.__name__

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        session = current_session()
        bound: Callable[P, R] = getattr(session, name)
        return bound(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"a{name}"
    call.__module__ = "mikro"
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    del call.__wrapped__  # type: ignore[attr-defined]
    return call


abuild_pyramid = _bind(Mikro.build_pyramid)
acompute = _bind(Mikro.compute)
acreate_dataset = _bind(Mikro.create_dataset)
acreate_experiment = _bind(Mikro.create_experiment)
acreate_metric = _bind(Mikro.create_metric)
acreate_representation = _bind(Mikro.create_representation)
acreate_representations = _bind(Mikro.create_representations)
acreate_roi = _bind(Mikro.create_roi)
acreate_sample = _bind(Mikro.create_sample)
acreate_table = _bind(Mikro.create_table)
acreate_thumbnail = _bind(Mikro.create_thumbnail)
adelete_dataset = _bind(Mikro.delete_dataset)
adelete_experiment = _bind(Mikro.delete_experiment)
adelete_file = _bind(Mikro.delete_file)
adelete_metric = _bind(Mikro.delete_metric)
adelete_representation = _bind(Mikro.delete_representation)
adelete_roi = _bind(Mikro.delete_roi)
adelete_sample = _bind(Mikro.delete_sample)
adelete_table = _bind(Mikro.delete_table)
adelete_thumbnail = _bind(Mikro.delete_thumbnail)
adownload_file = _bind(Mikro.download_file)
afinish_upload = _bind(Mikro.finish_upload)
aget_dataset = _bind(Mikro.get_dataset)
aget_experiment = _bind(Mikro.get_experiment)
aget_file = _bind(Mikro.get_file)
aget_metric = _bind(Mikro.get_metric)
aget_representation = _bind(Mikro.get_representation)
aget_roi = _bind(Mikro.get_roi)
aget_sample = _bind(Mikro.get_sample)
aget_table = _bind(Mikro.get_table)
aget_thumbnail = _bind(Mikro.get_thumbnail)
aget_zarr_store = _bind(Mikro.get_zarr_store)
aingest = _bind(Mikro.ingest)
aiter_datasets = _bind(Mikro.iter_datasets)
aiter_experiments = _bind(Mikro.iter_experiments)
aiter_files = _bind(Mikro.iter_files)
aiter_metrics = _bind(Mikro.iter_metrics)
aiter_representations = _bind(Mikro.iter_representations)
aiter_rois = _bind(Mikro.iter_rois)
aiter_samples = _bind(Mikro.iter_samples)
aiter_tables = _bind(Mikro.iter_tables)
aiter_thumbnails = _bind(Mikro.iter_thumbnails)
alegacy_source_fingerprints = _bind(Mikro.legacy_source_fingerprints)
alist_datasets = _bind(Mikro.list_datasets)
alist_experiments = _bind(Mikro.list_experiments)
alist_files = _bind(Mikro.list_files)
alist_metrics = _bind(Mikro.list_metrics)
alist_representations = _bind(Mikro.list_representations)
alist_rois = _bind(Mikro.list_rois)
alist_samples = _bind(Mikro.list_samples)
alist_tables = _bind(Mikro.list_tables)
alist_thumbnails = _bind(Mikro.list_thumbnails)
ame = _bind(Mikro.me)
aopen_file = _bind(Mikro.open_file)
arelease_uploads = _bind(Mikro.release_uploads)
arequest_access = _bind(Mikro.request_access)
arequest_upload = _bind(Mikro.request_upload)
arequest_uploads = _bind(Mikro.request_uploads)
asearch_datasets = _bind(Mikro.search_datasets)
asearch_experiments = _bind(Mikro.search_experiments)
asearch_files = _bind(Mikro.search_files)
asearch_metrics = _bind(Mikro.search_metrics)
asearch_representations = _bind(Mikro.search_representations)
asearch_rois = _bind(Mikro.search_rois)
asearch_samples = _bind(Mikro.search_samples)
asearch_tables = _bind(Mikro.search_tables)
asources_ingested = _bind(Mikro.sources_ingested)
athumbnail_png = _bind(Mikro.thumbnail_png)
aupdate_dataset = _bind(Mikro.update_dataset)
aupdate_experiment = _bind(Mikro.update_experiment)
aupdate_file = _bind(Mikro.update_file)
aupdate_metric = _bind(Mikro.update_metric)
aupdate_representation = _bind(Mikro.update_representation)
aupdate_roi = _bind(Mikro.update_roi)
aupdate_sample = _bind(Mikro.update_sample)
aupdate_table = _bind(Mikro.update_table)
aupdate_thumbnail = _bind(Mikro.update_thumbnail)
aupload_file = _bind(Mikro.upload_file)
awatch_representations = _bind(Mikro.watch_representations)
awatch_rois = _bind(Mikro.watch_rois)
