"""A thumbnail's PNG is read only by the query that shows it: listing images or thumbnails (and every
relation that embeds them) must not read a blob per row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from mikro.server import _models as m
from mikro.server._auth import AuthUser
from mikro.server._crud import _row_by_id, visible_to
from mikro.server._loaders import _by_column_query, _by_id_query


def _selected(query: Select[Any]) -> set[str]:
    return {column.name for column in query.selected_columns}


def test_row_reads_leave_the_png_out() -> None:
    user = AuthUser(1, "alice", False)
    for query in (
        visible_to(m.Thumbnail, user),  # thumbnails(...)
        _row_by_id(m.Thumbnail),  # thumbnail(id)
        _by_column_query(m.Thumbnail, "representation_id"),  # representation { thumbnails }
        _by_id_query(m.Thumbnail),
    ):
        assert "png" not in _selected(query) and {"id", "width", "height"} <= _selected(query)


def test_the_png_field_reads_only_the_png() -> None:
    assert _selected(_by_id_query(m.Thumbnail, "png")) == {"id", "png"}
