"""The web stack's floor for the request benchmarks: a bare Starlette endpoint that runs the SQL a
``representation(id)`` / ``representations(pagination: {limit})`` request with the client's documents
runs (the same statements, built by the same code, read the same way: `Database.rows`, the row in one
call and its relations in another) and returns the rows as JSON, with no GraphQL.

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


async def _relations(db: Database, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Each representation row with what ``RepresentationDetail`` shows of it, one statement per
    relation, all read in one call (as the server's DataLoaders batch them)."""
    ids = [row.id for row in rows]
    experiment_link = m.representation_experiments.c
    origin_link = m.representation_origins.c
    # (name in the JSON, the statement's builder and its arguments, keys, the column that groups them:
    # None for a single object per key)
    relations: list[tuple[str, Any, tuple[Any, ...], list[int], str | None]] = [
        ("store", by_id_query, (m.Store,), [row.store_id for row in rows], None),
        ("sample", by_id_query, (m.Sample,), [row.sample_id for row in rows], None),
        ("dataset", by_id_query, (m.Dataset,), [row.dataset_id for row in rows], None),
        ("originalFile", by_id_query, (m.FileRow,), [row.original_file_id for row in rows], None),
        (
            "experiments",
            through_query,
            (m.Experiment, experiment_link.representation_id, experiment_link.experiment_id),
            ids,
            "link_key",
        ),
        (
            "origins",
            through_query,
            (m.Representation, origin_link.derived_id, origin_link.origin_id),
            ids,
            "link_key",
        ),
        (
            "derived",
            through_query,
            (m.Representation, origin_link.origin_id, origin_link.derived_id),
            ids,
            "link_key",
        ),
        ("rois", by_column_query, (m.Roi, "representation_id"), ids, "representation_id"),
        ("metrics", by_column_query, (m.Metric, "representation_id"), ids, "representation_id"),
        ("thumbnails", by_column_query, (m.Thumbnail, "representation_id"), ids, "representation_id"),
    ]
    wanted = [
        (name, build, args, sorted({k for k in keys if k is not None}), column)
        for name, build, args, keys, column in relations
    ]
    wanted = [relation for relation in wanted if relation[3]]
    found = await db.rows([keyed_query(build, *args, keys=keys) for _, build, args, keys, _ in wanted])
    single: dict[str, dict[int, dict[str, Any]]] = {}
    many: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for (name, _, _, _, column), got in zip(wanted, found, strict=True):
        if column is None:
            single[name] = {row.id: plain for row, plain in zip(got, _rows(got), strict=True)}
        else:
            grouped = many.setdefault(name, {})
            for row, plain in zip(got, _rows(got), strict=True):
                grouped.setdefault(getattr(row, column), []).append(plain)
    out = []
    for row, plain in zip(rows, _rows(rows), strict=True):
        for name, key in (
            ("store", row.store_id),
            ("sample", row.sample_id),
            ("dataset", row.dataset_id),
            ("originalFile", row.original_file_id),
        ):
            plain[name] = single.get(name, {}).get(key)
        for name in ("experiments", "origins", "derived", "rois", "metrics", "thumbnails"):
            plain[name] = many.get(name, {}).get(row.id, [])
        out.append(plain)
    return out


def floor_routes(services: Services) -> list[Route]:
    db = services.db

    async def representation(request: Request) -> Response:
        (rows,) = await db.rows([(row_by_id(m.Representation), {"id": int(request.path_params["id"])})])
        body: Any = (await _relations(db, rows))[0] if rows else None
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
