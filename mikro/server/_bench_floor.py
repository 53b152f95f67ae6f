"""The web stack's floor for the request benchmarks: a bare Starlette endpoint that runs the SQL a
``representation(id)`` / ``representations(pagination: {limit})`` request with the client's documents
runs (the same statements, built by the same code) and returns the rows as JSON, with no GraphQL.

Mounted only when ``MIKRO_BENCH_FLOOR`` is set (``benchmarks/per_request.py`` sets it): it skips
authentication and shows every user's rows, so a real server never serves it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mikro.server import _models as m

# The very builders the resolvers use, so that the floor runs their statements.
from mikro.server._crud import _row_by_id as row_by_id
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
    return [{k: _plain(v) for k, v in row._mapping.items()} for row in rows]


async def _relations(session: AsyncSession, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Each representation row with what ``RepresentationDetail`` shows of it, one statement per
    relation (as the server's DataLoaders batch them)."""
    ids = [row.id for row in rows]

    async def by_id(model: Any, keys: set[int | None]) -> dict[int, dict[str, Any]]:
        wanted = [k for k in keys if k is not None]
        if not wanted:
            return {}
        found = (await session.execute(*keyed_query(by_id_query, model, keys=wanted))).all()
        return {row.id: plain for row, plain in zip(found, _rows(found), strict=True)}

    async def grouped(column: str, build: Any, *args: Any) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        found = (await session.execute(*keyed_query(build, *args, keys=ids))).all()
        for row, plain in zip(found, _rows(found), strict=True):
            out.setdefault(getattr(row, column), []).append(plain)
        return out

    stores = await by_id(m.Store, {row.store_id for row in rows})
    samples = await by_id(m.Sample, {row.sample_id for row in rows})
    datasets = await by_id(m.Dataset, {row.dataset_id for row in rows})
    files = await by_id(m.FileRow, {row.original_file_id for row in rows})
    experiment_link = m.representation_experiments.c
    origin_link = m.representation_origins.c
    many = {
        "experiments": await grouped(
            "link_key",
            through_query,
            m.Experiment,
            experiment_link.representation_id,
            experiment_link.experiment_id,
        ),
        "origins": await grouped(
            "link_key", through_query, m.Representation, origin_link.derived_id, origin_link.origin_id
        ),
        "derived": await grouped(
            "link_key", through_query, m.Representation, origin_link.origin_id, origin_link.derived_id
        ),
        "rois": await grouped("representation_id", by_column_query, m.Roi, "representation_id"),
        "metrics": await grouped("representation_id", by_column_query, m.Metric, "representation_id"),
        "thumbnails": await grouped("representation_id", by_column_query, m.Thumbnail, "representation_id"),
    }
    out = []
    for row, plain in zip(rows, _rows(rows), strict=True):
        plain["store"] = stores.get(row.store_id)
        plain["sample"] = samples.get(row.sample_id)
        plain["dataset"] = datasets.get(row.dataset_id)
        plain["originalFile"] = files.get(row.original_file_id)
        for name, found in many.items():
            plain[name] = found.get(row.id, [])
        out.append(plain)
    return out


def floor_routes(services: Services) -> list[Route]:
    async def representation(request: Request) -> Response:
        async with services.db.read() as session:
            row = (
                await session.execute(row_by_id(m.Representation), {"id": int(request.path_params["id"])})
            ).first()
            body: Any = None if row is None else (await _relations(session, [row]))[0]
        return Response(json.dumps({"data": {"representation": body}}), media_type="application/json")

    async def representations(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "100"))
        query = select(*m.listed_columns(m.Representation)).order_by(m.Representation.id).limit(limit)
        async with services.db.read() as session:
            rows = (await session.execute(query)).all()
            body = await _relations(session, rows)
        return Response(json.dumps({"data": {"representations": body}}), media_type="application/json")

    return [
        Route("/bench-floor/representation/{id:int}", representation, methods=["GET"]),
        Route("/bench-floor/representations", representations, methods=["GET"]),
    ]
