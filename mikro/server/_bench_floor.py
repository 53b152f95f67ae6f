"""The web stack's floor for the request benchmarks: a bare Starlette endpoint that runs the SQL a
``representation(id)`` / ``representations(pagination: {limit})`` request with the client's documents
runs (the same statements, built by the same code, read the same way: `Database.rows`, a get's image
and its relations in one call, a list's page in one and its relations in another) and returns the rows
as JSON, with no GraphQL.

Mounted only when ``MIKRO_BENCH_FLOOR`` is set (``benchmarks/per_request.py`` sets it): it skips
authentication and shows every user's rows, so a real server never serves it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mikro.server import _models as m

# The very builders the resolvers use, so that the floor runs their statements (read as the server
# reads them: `Database.rows`, the relations of a page in one call).
from mikro.server._crud import _row_by_id as row_by_id
from mikro.server._database import Database
from mikro.server._loaders import _by_column_query as by_column_query
from mikro.server._loaders import _by_id_query as by_id_query
from mikro.server._loaders import _keyed_query as keyed_query
from mikro.server._loaders import _of_image_query as of_image_query
from mikro.server._loaders import _through_query as through_query
from mikro.server._services import Services

__all__ = ["floor_routes"]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def _rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row._asdict().items()} for row in rows]


# What ``RepresentationDetail`` shows of an image beyond its row: (name in the JSON, the statement's
# builder and its arguments, the image's column holding the key: None for the image's own id, the
# column that groups the rows by image: None for a single object per image).
_SINGLE = [
    ("store", (m.Store,), "store_id"),
    ("sample", (m.Sample,), "sample_id"),
    ("dataset", (m.Dataset,), "dataset_id"),
    ("originalFile", (m.FileRow,), "original_file_id"),
]
_MANY: list[tuple[str, Any, tuple[Any, ...], str]] = [
    (
        "experiments",
        through_query,
        (
            m.Experiment,
            m.representation_experiments.c.representation_id,
            m.representation_experiments.c.experiment_id,
        ),
        "link_key",
    ),
    (
        "origins",
        through_query,
        (m.Representation, m.representation_origins.c.derived_id, m.representation_origins.c.origin_id),
        "link_key",
    ),
    (
        "derived",
        through_query,
        (m.Representation, m.representation_origins.c.origin_id, m.representation_origins.c.derived_id),
        "link_key",
    ),
    ("rois", by_column_query, (m.Roi, "representation_id"), "representation_id"),
    ("metrics", by_column_query, (m.Metric, "representation_id"), "representation_id"),
    ("thumbnails", by_column_query, (m.Thumbnail, "representation_id"), "representation_id"),
]


def _with_relations(
    rows: Sequence[Any], single: dict[str, Sequence[Any]], many: dict[str, Sequence[Any]]
) -> list[dict[str, Any]]:
    """Each image row as JSON, with the rows of its relations (by relation name: the rows read)."""
    by_id = {
        name: {row.id: plain for row, plain in zip(got, _rows(got), strict=True)}
        for name, got in single.items()
    }
    grouped: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for name, _, _, column in _MANY:
        got = many.get(name, ())
        for row, plain in zip(got, _rows(got), strict=True):
            grouped.setdefault(name, {}).setdefault(getattr(row, column), []).append(plain)
    out = []
    for row, plain in zip(rows, _rows(rows), strict=True):
        for name, _, key in _SINGLE:
            plain[name] = by_id.get(name, {}).get(getattr(row, key))
        for name, *_ in _MANY:
            plain[name] = grouped.get(name, {}).get(row.id, [])
        out.append(plain)
    return out


async def _relations(db: Database, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Each representation row with what ``RepresentationDetail`` shows of it, one statement per
    relation, all read in one call (as the server's DataLoaders batch a list's relations)."""
    ids = [row.id for row in rows]
    wanted: list[tuple[str, bool, Any]] = []
    for name, args, key in _SINGLE:
        keys = sorted({k for row in rows if (k := getattr(row, key)) is not None})
        if keys:
            wanted.append((name, True, keyed_query(by_id_query, *args, keys=keys)))
    if ids:
        wanted += [(name, False, keyed_query(build, *args, keys=ids)) for name, build, args, _ in _MANY]
    found = await db.rows([statement for *_, statement in wanted])
    single = {name: got for (name, one, _), got in zip(wanted, found, strict=True) if one}
    many = {name: got for (name, one, _), got in zip(wanted, found, strict=True) if not one}
    return _with_relations(rows, single, many)


async def _image_with_relations(db: Database, image_id: int) -> dict[str, Any] | None:
    """One image and its relations read in one call, as the server reads a get: the rows the image
    refers to through its own row (`of_image_query`)."""
    single = [(name, (of_image_query(key), {"keys": image_id})) for name, _, key in _SINGLE]
    many = [(name, keyed_query(build, *args, keys=[image_id])) for name, build, args, _ in _MANY]
    row = (row_by_id(m.Representation), {"id": image_id})
    found = await db.rows([row, *(statement for _, statement in (*single, *many))])
    if not found[0]:
        return None
    named = dict(zip([name for name, _ in (*single, *many)], found[1:], strict=True))
    relations = {name: named[name] for name, _ in single}
    return _with_relations(found[0], relations, {name: named[name] for name, _ in many})[0]


def floor_routes(services: Services) -> list[Route]:
    db = services.db

    async def representation(request: Request) -> Response:
        body = await _image_with_relations(db, int(request.path_params["id"]))
        return Response(json.dumps({"data": {"representation": body}}), media_type="application/json")

    async def representations(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "100"))
        query = select(*m.listed_columns(m.Representation)).order_by(m.Representation.id).limit(limit)
        (rows,) = await db.rows([(query, None)])
        body = await _relations(db, rows)
        return Response(json.dumps({"data": {"representations": body}}), media_type="application/json")

    return [
        Route("/bench-floor/representation/{id:int}", representation, methods=["GET"]),
        Route("/bench-floor/representations", representations, methods=["GET"]),
    ]
