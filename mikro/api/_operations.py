"""One typed method per GraphQL operation in ``mikro/api/documents`` (mixed into the session).

Naming follows ariadne-codegen's style: ``get_*`` (one by id), ``list_*`` (filters as keyword
arguments, ``offset``/``limit``), ``iter_*`` (an async iterator paging through every match),
``search_*`` (by text in the name), ``create_*``, ``update_*`` (only the arguments given are changed),
``delete_*`` (returns the deleted id). Relation arguments take an id or a model (``dataset=d`` or
``dataset="3"``).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import pydantic
from pydantic.alias_generators import to_camel as _pydantic_to_camel

from mikro._exceptions import ValidationError
from mikro.api._acquisition import SourceMatch
from mikro.api._arguments import choice, metric_value
from mikro.api._base import MikroModel
from mikro.api._enums import RepresentationVariety, RoiKind, UploadKind
from mikro.api._grant import Grant
from mikro.api._models import (
    ROI,
    Channel,
    Dataset,
    Experiment,
    Metric,
    PhysicalSize,
    Representation,
    Sample,
    Table,
    Thumbnail,
    User,
    ZarrStore,
)

#: Input keys are a few dozen names; pydantic's to_camel runs regular expressions on each (about 20 µs),
#: which made converting an image's registration cost more than encoding it.
to_camel = functools.lru_cache(maxsize=1024)(_pydantic_to_camel)

__all__ = ["DEFAULT_PAGE_SIZE", "IdLike", "Operations"]

M = TypeVar("M", bound=MikroModel)
T = TypeVar("T")

#: The server's default page, and at most 1000.
DEFAULT_PAGE_SIZE = 100


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


IdLike = str | int | _HasId
_RELATION_KEYS = frozenset(
    {
        "store",
        "sample",
        "dataset",
        "experiment",
        "representation",
        "roi",
        "parent",
        "origin",
        "derivedFrom",
        "originalFile",
    }
)
_RELATION_LIST_KEYS = frozenset({"experiments", "origins", "ids", "representations", "samples", "datasets"})


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


#: Default of arguments for which None is a value the caller may pass (and be told it is refused).
NOT_GIVEN: Any = _NotGiven()


def _id(value: IdLike) -> str:
    if isinstance(value, bool):
        raise ValidationError(f"expected an id or a model, got {value!r}")
    if isinstance(value, str | int):
        return str(value)
    ident = getattr(value, "id", None)
    if ident is None:
        raise ValidationError(f"expected an id or a model with an id, got {value!r}")
    return str(ident)


def _opt_id(value: IdLike | None) -> str | None:
    return None if value is None else _id(value)


def _ids(values: Iterable[IdLike] | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str | int) or hasattr(values, "id"):
        raise ValidationError("expected a list of ids or models, got a single one")
    return [_id(v) for v in values]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, MikroModel):
        return value.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _input(**fields: Any) -> dict[str, Any]:
    """A GraphQL input object: camelCase keys, ``None`` (= "not given") dropped."""
    return {to_camel(k): _jsonable(v) for k, v in fields.items() if v is not None}


class WireInput(dict[str, Any]):
    """An input object already in its GraphQL form (see `wire_input`): sent as it is."""


def wire_input(values: Mapping[str, Any]) -> WireInput:
    """`_camel_input` done ahead, in the worker thread that made the input: the event loop then sends it
    as it is (converting each small image's registration on the loop was ~5 % of its time in an
    ingest of small files)."""
    return WireInput(_camel_input(values))


def _camel_input(values: Mapping[str, Any]) -> dict[str, Any]:
    """A caller's input dict (snake_case or camelCase keys; ids or models) as a GraphQL input object.

    Nested input objects (channels, physical size) are converted too; not meant for JSON values.
    """
    if type(values) is WireInput:
        return values
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = to_camel(key) if "_" in key else key
        if value is None:
            continue
        if name in _RELATION_KEYS:
            value = _id(value)
        elif name in _RELATION_LIST_KEYS:
            value = _ids(value)
        elif isinstance(value, Mapping):
            value = _camel_input(value)
        elif isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
            value = [_camel_input(v) for v in value]
        out[name] = _jsonable(value)
    return out


def _vectors(vectors: Iterable[Iterable[float]]) -> list[list[float]]:
    # numpy arrays and tuples both become plain lists of floats.
    return [[float(v) for v in point] for point in vectors]


def _channels(channels: Sequence[Channel | Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    if channels is None:
        return None
    return [
        c.model_dump(by_alias=True, exclude_none=True) if isinstance(c, Channel) else _camel_input(c)
        for c in channels
    ]


def _physical_size(value: PhysicalSize | Mapping[str, float] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, PhysicalSize):
        return value.model_dump(exclude_none=True)
    return dict(value)


#: How a keyword of a ``list_*`` or ``update_*`` method becomes its input value: relations take ids or
#: models, enums a member or its name; other keywords go as given (camelCased). None means "not given".
_VALUES: dict[str, Callable[[Any], Any]] = {
    "tags": list,
    "content_hashes": list,
    **dict.fromkeys(
        ("sample", "experiment", "dataset", "derived_from", "parent", "representation", "roi", "origin"), _id
    ),
    **dict.fromkeys(("ids", "experiments", "origins", "representations", "samples", "datasets"), _ids),
    "variety": lambda value: str(choice(RepresentationVariety, value, "variety")),
    "kind": lambda value: str(choice(RoiKind, value, "kind")),
    "channels": _channels,
    "physical_size": _physical_size,
    "vectors": _vectors,
}
#: Filter fields named otherwise than their ``list_*`` keyword.
_FILTER_FIELDS = {"name_contains": "search"}


def _values(given: Mapping[str, Any], skip: Iterable[str], rename: Mapping[str, str] = {}) -> dict[str, Any]:
    """An input object of a method's keywords (``given``: its ``locals()``), without those in ``skip``."""
    fields = {}
    for keyword, value in given.items():
        if keyword in skip or value is None:
            continue
        convert = _VALUES.get(keyword)
        fields[rename.get(keyword, keyword)] = value if convert is None else convert(value)
    return _input(**fields)


def _filter(given: Mapping[str, Any]) -> dict[str, Any] | None:
    """The filter input of a ``list_*`` method's keywords (``given``: its ``locals()``)."""
    return _values(given, ("self", "offset", "limit"), _FILTER_FIELDS) or None


def _base64(data: bytes) -> str:
    """A ``Base64`` scalar's value."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationError(f"expected PNG bytes, got {type(data).__name__}")
    return base64.b64encode(data).decode("ascii")


def _page(offset: int, limit: int) -> dict[str, int]:
    return {"offset": offset, "limit": limit}


@functools.cache
def _page_of(model: type[MikroModel]) -> pydantic.TypeAdapter[Any]:
    """A list operation's whole answer, ``{"data": {"<field>": [model, ...]}}``, validated in one pass
    from its bytes; an answer with ``errors`` is not of this shape (see ``execute_validated``)."""
    page = pydantic.create_model(
        f"{model.__name__}Page",
        __config__=pydantic.ConfigDict(extra="forbid"),
        data=(dict[str, list[model]], ...),  # type: ignore[valid-type]
        extensions=(Any, None),
    )
    return pydantic.TypeAdapter(page)


class _Created(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    id: str


class _CreatedAnswer(pydantic.BaseModel):
    """A batch mutation's answer that asked only the new rows' ids."""

    model_config = pydantic.ConfigDict(extra="forbid")
    data: dict[str, list[_Created]]
    extensions: Any = None


_CREATED_IDS = pydantic.TypeAdapter(_CreatedAnswer)


@functools.cache
def _answer_of(model: type[MikroModel]) -> pydantic.TypeAdapter[Any]:
    """A query's answer of one object, ``{"data": {"<field>": model}}``, validated from its bytes like a
    page (``_page_of``): decoding it to dicts first and validating those was ~5 % of the client's CPU
    per ``get_*`` (issue 17)."""
    answer = pydantic.create_model(
        f"{model.__name__}Answer",
        __config__=pydantic.ConfigDict(extra="forbid"),
        data=(dict[str, model], ...),  # type: ignore[valid-type]
        extensions=(Any, None),
    )
    return pydantic.TypeAdapter(answer)


class Operations:
    """The typed operations; the session supplies :meth:`_execute` (transport, idempotency keys)."""

    async def _execute(self, operation: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _model(self, model: type[M], value: Any) -> M:
        # The context hands this session to every model built from the answer (see MikroModel).
        return model.model_validate(value, context={"session": self})

    async def _one(self, operation_name: str, model: type[M], variables: Mapping[str, Any]) -> M:
        answer = await self._execute_validated(operation_name, variables, _answer_of(model))
        (found,) = answer.data.values()
        return cast("M", found)

    async def _listed_answer(
        self, operation_name: str, model: type[M], variables: Mapping[str, Any]
    ) -> list[M]:
        """An operation's answer of a list of ``model`` (a page, a batch's created rows), validated from
        its bytes in one pass: a batch's rows validated one by one after decoding were 8 % of the
        client's CPU per small file ingested (issue 16)."""
        answer = await self._execute_validated(operation_name, variables, _page_of(model))
        (values,) = answer.data.values()
        return cast("list[M]", values)

    async def _execute_validated(
        self, operation: str, variables: Mapping[str, Any], shape: pydantic.TypeAdapter[T]
    ) -> T:
        raise NotImplementedError

    async def _many(
        self, operation: str, model: type[M], filt: dict[str, Any] | None, offset: int, limit: int
    ) -> list[M]:
        return await self._listed_answer(
            operation, model, {"filter": filt, "pagination": _page(offset, limit)}
        )

    async def _pages(
        self, fetch: Callable[[int, int], Awaitable[list[M]]], page_size: int
    ) -> AsyncIterator[M]:
        if page_size <= 0:
            raise ValidationError("page_size must be positive")
        offset = 0
        while True:
            page = await fetch(offset, page_size)
            for item in page:
                yield item
            if len(page) < page_size:
                return
            offset += page_size

    async def _updated(self, operation: str, model: type[M], subject: str, given: Mapping[str, Any]) -> M:
        """An ``update_*`` method: the keywords given (``given``: its ``locals()``) change ``subject``."""
        data = _values(given, ("self", subject))
        return await self._one(operation, model, {"id": _id(given[subject]), "input": data})

    async def _listed(self, operation: str, model: type[M], given: Mapping[str, Any]) -> list[M]:
        """A ``list_*`` method: one page of what matches its keywords (``given``: its ``locals()``)."""
        return await self._many(operation, model, _filter(given), given["offset"], given["limit"])

    def _paged(
        self, list_page: Callable[..., Awaitable[list[M]]], given: Mapping[str, Any]
    ) -> AsyncIterator[M]:
        """An ``iter_*`` method: its ``list_*`` twin's pages, ``page_size`` at a time, with the filters the
        ``iter_*`` method was given (``given`` is its ``locals()``: the same keywords as ``list_*``)."""
        filters = {k: v for k, v in given.items() if k not in ("self", "page_size")}

        def fetch(offset: int, limit: int) -> Awaitable[list[M]]:
            return list_page(**filters, offset=offset, limit=limit)

        return self._pages(fetch, given["page_size"])

    async def _delete(self, operation: str, value: IdLike) -> str:
        data = await self._execute(operation, {"id": _id(value)})
        (deleted,) = data.values()
        return str(deleted)

    # -- the user and the data plane's stores ------------------------------------------------------

    async def me(self) -> User:
        """The user this session's token belongs to."""
        return await self._one("Me", User, {})

    async def get_zarr_store(self, id: IdLike) -> ZarrStore:
        return await self._one("GetZarrStore", ZarrStore, {"id": _id(id)})

    async def request_upload(self, kind: UploadKind | str = UploadKind.ZARR) -> Grant:
        """Reserve a fresh store (key prefix) and get a write grant for it."""
        return await self._one("RequestUpload", Grant, {"kind": str(choice(UploadKind, kind, "kind"))})

    async def request_uploads(self, count: int, kind: UploadKind | str = UploadKind.ZARR) -> list[Grant]:
        """Reserve ``count`` fresh stores in one request, each with its write grant."""
        # Validated from the answer's bytes in one pass: decoded first, then a model each, the grants of
        # a reservation were a tenth of the event loop's time in an ingest of small files.
        variables = {"count": count, "kind": str(choice(UploadKind, kind, "kind"))}
        return await self._listed_answer("RequestUploads", Grant, variables)

    async def release_uploads(self, stores: Iterable[IdLike]) -> list[str]:
        """Give back reserved stores that were never finished (they are deleted); returns their ids."""
        data = await self._execute("ReleaseUploads", {"stores": [_id(s) for s in stores]})
        return [str(i) for i in data["releaseUploads"]]

    async def finish_upload(self, store: IdLike) -> ZarrStore:
        """Tell the server the zarr data of ``store`` is complete; it records shape, dtype and chunks."""
        return await self._one("FinishUpload", ZarrStore, {"store": _id(store)})

    async def request_access(self, store: IdLike, write: bool = False) -> Grant:
        """A grant to read ``store`` (or, with ``write``, to keep writing an unfinished upload)."""
        return await self._one("RequestAccess", Grant, {"store": _id(store), "write": write})

    # -- rows the data plane creates once their objects are on the store ----------------------------

    async def _create_representation_row(self, input: Mapping[str, Any]) -> Representation:
        """createRepresentation with ``input`` as a RepresentationInput (snake_case or camelCase keys)."""
        return await self._one("CreateRepresentation", Representation, {"input": _camel_input(input)})

    async def _create_representation_rows(self, inputs: Sequence[Mapping[str, Any]]) -> list[Representation]:
        """createRepresentations: several RepresentationInputs in one request and one transaction."""
        inputs_ = {"inputs": [_camel_input(i) for i in inputs]}
        return await self._listed_answer("CreateRepresentations", Representation, inputs_)

    async def _create_representation_ids(self, inputs: Sequence[Mapping[str, Any]]) -> list[str]:
        """createRepresentations answering only the new images' ids (an ingest needs no more): the full
        answer cost the server every relation of every image, and the client their models."""
        return await self._created_ids("CreateRepresentationIds", inputs)

    async def _created_ids(self, operation: str, inputs: Sequence[Mapping[str, Any]]) -> list[str]:
        """A batch mutation of ``inputs`` whose document asks only the new rows' ``id``."""
        variables = {"inputs": [_camel_input(i) for i in inputs]}
        answer = await self._execute_validated(operation, variables, _CREATED_IDS)
        (rows,) = answer.data.values()
        return [row.id for row in rows]

    async def _create_table_row(self, input: Mapping[str, Any]) -> Table:
        return await self._one("CreateTable", Table, {"input": _camel_input(input)})

    # -- Representation (created with pixels by the data plane: create_representation) ------------

    async def get_representation(self, id: IdLike) -> Representation:
        return await self._one("GetRepresentation", Representation, {"id": _id(id)})

    async def list_representations(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        sample: IdLike | None = None,
        experiment: IdLike | None = None,
        dataset: IdLike | None = None,
        derived_from: IdLike | None = None,
        variety: RepresentationVariety | str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
        source_fingerprint: str | None = None,
    ) -> list[Representation]:
        return await self._listed("ListRepresentations", Representation, locals())

    def iter_representations(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        sample: IdLike | None = None,
        experiment: IdLike | None = None,
        dataset: IdLike | None = None,
        derived_from: IdLike | None = None,
        variety: RepresentationVariety | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        source_fingerprint: str | None = None,
    ) -> AsyncIterator[Representation]:
        """Every matching image, fetched ``page_size`` at a time."""
        return self._paged(self.list_representations, locals())

    async def search_representations(
        self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Representation]:
        """Images whose name contains ``text`` (case-insensitive)."""
        return await self.list_representations(name_contains=text, offset=offset, limit=limit)

    async def update_representation(
        self,
        representation: IdLike,
        *,
        name: str | None = None,
        variety: RepresentationVariety | str | None = None,
        sample: IdLike | None = None,
        experiments: Iterable[IdLike] | None = None,
        dataset: IdLike | None = None,
        tags: Sequence[str] | None = None,
        channels: Sequence[Channel | Mapping[str, Any]] | None = None,
        physical_size: PhysicalSize | Mapping[str, float] | None = None,
        acquisition_date: dt.datetime | None = None,
    ) -> Representation:
        return await self._updated("UpdateRepresentation", Representation, "representation", locals())

    async def delete_representation(self, representation: IdLike) -> str:
        """Delete an image with its pixels (the store's objects), its ROIs, metrics and thumbnails.

        Images derived from it are kept (it leaves their ``origins``), and tables lose it as an origin.
        Returns the deleted id."""
        return await self._delete("DeleteRepresentation", representation)

    async def sources_ingested(self, fingerprints: Sequence[str]) -> list[SourceMatch]:
        """Your images ingested from files with these content fingerprints (one request, at most 2000)."""
        data = await self._execute("SourcesIngested", {"fingerprints": list(fingerprints)})
        return [self._model(SourceMatch, item) for item in data["sourcesIngested"]]

    async def legacy_source_fingerprints(self) -> bool:
        """Whether some of your images were ingested by mikro before BLAKE3 fingerprints (their
        ``source_fingerprint`` a bare SHA-256 hex): an ingest then looks sources up by both."""
        data = await self._execute("LegacySourceFingerprints", {})
        return bool(data["legacySourceFingerprints"])

    # -- Sample --------------------------------------------------------------------------------------

    async def get_sample(self, id: IdLike) -> Sample:
        return await self._one("GetSample", Sample, {"id": _id(id)})

    async def list_samples(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Sample]:
        return await self._listed("ListSamples", Sample, locals())

    def iter_samples(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Sample]:
        return self._paged(self.list_samples, locals())

    async def search_samples(
        self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Sample]:
        return await self.list_samples(name_contains=text, offset=offset, limit=limit)

    async def create_sample(
        self, name: str, *, description: str | None = None, tags: Sequence[str] = ()
    ) -> Sample:
        data = _input(name=name, description=description, tags=list(tags))
        return await self._one("CreateSample", Sample, {"input": data})

    async def update_sample(
        self,
        sample: IdLike,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> Sample:
        return await self._updated("UpdateSample", Sample, "sample", locals())

    async def delete_sample(self, sample: IdLike) -> str:
        """Delete a sample; its images are kept, with ``sample`` None. Returns the deleted id."""
        return await self._delete("DeleteSample", sample)

    # -- Experiment ----------------------------------------------------------------------------------

    async def get_experiment(self, id: IdLike) -> Experiment:
        return await self._one("GetExperiment", Experiment, {"id": _id(id)})

    async def list_experiments(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Experiment]:
        return await self._listed("ListExperiments", Experiment, locals())

    def iter_experiments(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Experiment]:
        return self._paged(self.list_experiments, locals())

    async def search_experiments(
        self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Experiment]:
        return await self.list_experiments(name_contains=text, offset=offset, limit=limit)

    async def create_experiment(
        self, name: str, *, description: str | None = None, tags: Sequence[str] = ()
    ) -> Experiment:
        data = _input(name=name, description=description, tags=list(tags))
        return await self._one("CreateExperiment", Experiment, {"input": data})

    async def update_experiment(
        self,
        experiment: IdLike,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> Experiment:
        return await self._updated("UpdateExperiment", Experiment, "experiment", locals())

    async def delete_experiment(self, experiment: IdLike) -> str:
        """Delete an experiment; its images are kept (it leaves their ``experiments``). Returns the id."""
        return await self._delete("DeleteExperiment", experiment)

    # -- Dataset -------------------------------------------------------------------------------------

    async def get_dataset(self, id: IdLike) -> Dataset:
        return await self._one("GetDataset", Dataset, {"id": _id(id)})

    async def list_datasets(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        parent: IdLike | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Dataset]:
        return await self._listed("ListDatasets", Dataset, locals())

    def iter_datasets(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        parent: IdLike | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Dataset]:
        return self._paged(self.list_datasets, locals())

    async def search_datasets(
        self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Dataset]:
        return await self.list_datasets(name_contains=text, offset=offset, limit=limit)

    async def create_dataset(
        self,
        name: str,
        *,
        description: str | None = None,
        parent: IdLike | None = None,
        tags: Sequence[str] = (),
    ) -> Dataset:
        data = _input(name=name, description=description, parent=_opt_id(parent), tags=list(tags))
        return await self._one("CreateDataset", Dataset, {"input": data})

    async def update_dataset(
        self,
        dataset: IdLike,
        *,
        name: str | None = None,
        description: str | None = None,
        parent: IdLike | None = None,
        tags: Sequence[str] | None = None,
    ) -> Dataset:
        return await self._updated("UpdateDataset", Dataset, "dataset", locals())

    async def delete_dataset(self, dataset: IdLike, *, recursive: bool = False) -> str:
        """Delete a dataset; one that holds datasets or images raises :class:`mikro.ConflictError`.

        With ``recursive=True`` its sub-datasets (the whole subtree) are deleted with it; the images in
        any of them are kept, outside any dataset (``dataset`` None): images are deleted only by
        :meth:`delete_representation`. Returns the deleted id.
        """
        data = await self._execute("DeleteDataset", {"id": _id(dataset), "recursive": recursive})
        return str(data["deleteDataset"])

    # -- ROI -----------------------------------------------------------------------------------------

    async def get_roi(self, id: IdLike) -> ROI:
        return await self._one("GetRoi", ROI, {"id": _id(id)})

    async def list_rois(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        kind: RoiKind | str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[ROI]:
        """ROIs; ``name_contains`` matches the label."""
        return await self._listed("ListRois", ROI, locals())

    def iter_rois(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        kind: RoiKind | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[ROI]:
        return self._paged(self.list_rois, locals())

    async def search_rois(self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE) -> list[ROI]:
        return await self.list_rois(name_contains=text, offset=offset, limit=limit)

    async def create_roi(
        self,
        representation: IdLike,
        kind: RoiKind | str,
        vectors: Iterable[Iterable[float]],
        *,
        label: str | None = None,
        tags: Sequence[str] = (),
    ) -> ROI:
        """An ROI on ``representation``; ``vectors`` are 5-D points in (c, t, z, y, x) order."""
        data = _input(
            representation=_id(representation),
            kind=str(choice(RoiKind, kind, "kind")),
            vectors=_vectors(vectors),
            label=label,
            tags=list(tags),
        )
        return await self._one("CreateRoi", ROI, {"input": data})

    async def update_roi(
        self,
        roi: IdLike,
        *,
        kind: RoiKind | str | None = None,
        vectors: Iterable[Iterable[float]] | None = None,
        label: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> ROI:
        return await self._updated("UpdateRoi", ROI, "roi", locals())

    async def delete_roi(self, roi: IdLike) -> str:
        """Delete an ROI together with the metrics measured on it. Returns the deleted id."""
        return await self._delete("DeleteRoi", roi)

    # -- Metric --------------------------------------------------------------------------------------

    async def get_metric(self, id: IdLike) -> Metric:
        return await self._one("GetMetric", Metric, {"id": _id(id)})

    async def list_metrics(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        roi: IdLike | None = None,
        key: str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Metric]:
        """Metrics; ``key`` matches exactly, ``name_contains`` searches the key."""
        return await self._listed("ListMetrics", Metric, locals())

    def iter_metrics(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        roi: IdLike | None = None,
        key: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Metric]:
        return self._paged(self.list_metrics, locals())

    async def search_metrics(
        self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Metric]:
        return await self.list_metrics(name_contains=text, offset=offset, limit=limit)

    async def create_metric(
        self, representation: IdLike, key: str, value: Any, *, roi: IdLike | None = None
    ) -> Metric:
        """A measurement ``key`` = ``value`` on an image, optionally on one ROI.

        ``value`` is a number, string, bool, or a list / dict of those; numpy scalars and arrays are
        accepted (as numbers and lists) and a float stays a float. NaN, infinities and None raise
        :class:`mikro.ValidationError`.
        """
        data = _input(representation=_id(representation), key=key, roi=_opt_id(roi))
        data["value"] = metric_value(value)
        return await self._one("CreateMetric", Metric, {"input": data})

    async def update_metric(
        self, metric: IdLike, *, key: str | None = None, value: Any = NOT_GIVEN
    ) -> Metric:
        """Change a metric's key and/or value (values as in :meth:`create_metric`; None is refused)."""
        data = _input(key=key)
        if value is not NOT_GIVEN:
            data["value"] = metric_value(value)
        if not data:
            raise ValidationError("update_metric needs a new key or value")
        return await self._one("UpdateMetric", Metric, {"id": _id(metric), "input": data})

    async def delete_metric(self, metric: IdLike) -> str:
        """Delete one metric. Returns the deleted id."""
        return await self._delete("DeleteMetric", metric)

    # -- Table (created with its parquet file by the data plane: create_table) ----------------------

    async def get_table(self, id: IdLike) -> Table:
        return await self._one("GetTable", Table, {"id": _id(id)})

    async def list_tables(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        origin: IdLike | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Table]:
        return await self._listed("ListTables", Table, locals())

    def iter_tables(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        name_contains: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        origin: IdLike | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Table]:
        return self._paged(self.list_tables, locals())

    async def search_tables(
        self, text: str, *, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Table]:
        return await self.list_tables(name_contains=text, offset=offset, limit=limit)

    async def update_table(
        self,
        table: IdLike,
        *,
        name: str | None = None,
        origins: Iterable[IdLike] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Table:
        return await self._updated("UpdateTable", Table, "table", locals())

    async def delete_table(self, table: IdLike) -> str:
        """Delete a table and its parquet object; the images it came from are kept. Returns the id."""
        return await self._delete("DeleteTable", table)

    # -- Thumbnail (made at upload by the data plane; the server keeps the PNG) --------------------

    async def get_thumbnail(self, id: IdLike) -> Thumbnail:
        return await self._one("GetThumbnail", Thumbnail, {"id": _id(id)})

    async def thumbnail_png(self, thumbnail: IdLike) -> bytes:
        """The PNG of a thumbnail (e.g. ``rep.thumbnails[0]``), as bytes: one request, no grant."""
        data = await self._execute("GetThumbnailPng", {"id": _id(thumbnail)})
        return base64.b64decode(data["thumbnail"]["png"], validate=True)

    async def create_thumbnail(self, representation: IdLike, png: bytes) -> Thumbnail:
        """Add a thumbnail to an image; the server reads its width and height from the PNG
        (at most 1 MiB and 4096 pixels a side)."""
        data = {"representation": _id(representation), "png": _base64(png)}
        return await self._one("CreateThumbnail", Thumbnail, {"input": data})

    async def update_thumbnail(self, thumbnail: IdLike, png: bytes) -> Thumbnail:
        """Replace a thumbnail's PNG (width and height follow it)."""
        data = {"png": _base64(png)}
        return await self._one("UpdateThumbnail", Thumbnail, {"id": _id(thumbnail), "input": data})

    async def list_thumbnails(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Thumbnail]:
        return await self._listed("ListThumbnails", Thumbnail, locals())

    def iter_thumbnails(
        self,
        *,
        ids: Iterable[IdLike] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        representation: IdLike | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Thumbnail]:
        return self._paged(self.list_thumbnails, locals())

    async def delete_thumbnail(self, thumbnail: IdLike) -> str:
        """Delete one thumbnail; its image is kept. Returns the deleted id."""
        return await self._delete("DeleteThumbnail", thumbnail)
