"""The base of every model: camelCase aliases and readable printing."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel

__all__ = ["MikroModel"]

_MAX_REPR_ITEMS = 3


def _is_object(value: Any) -> bool:
    # Objects with an id are shortened to a reference; value objects (pixel sizes, channels) print whole.
    return isinstance(value, MikroModel) and "id" in type(value).model_fields


def _short(value: Any) -> Any:
    """A related object or list of them, shortened so a model's repr stays one readable line."""
    if _is_object(value):
        return value._ref()
    if isinstance(value, list) and value and _is_object(value[0]):
        refs = [item._ref() for item in value[:_MAX_REPR_ITEMS]]
        if len(value) > _MAX_REPR_ITEMS:
            refs.append(_More(len(value) - _MAX_REPR_ITEMS))
        return refs
    return value


class _Ref:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _More(_Ref):
    def __init__(self, count: int) -> None:
        super().__init__(f"... {count} more")


class MikroModel(BaseModel):
    """A typed view of a GraphQL object.

    Field names are snake_case, the schema's camelCase names are aliases (both accepted on input).
    On server objects, a relation the operation did not select raises :class:`mikro.NotFetchedError`
    when read (see ``mikro.api._models``); ``None`` means the server said there is none.
    Secrets are :class:`pydantic.SecretStr` and print masked.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if value is None or value == []:
                continue
            yield name, _short(value)

    def _ref(self) -> _Ref:
        parts = [f"id={getattr(self, 'id', None)!r}"]
        for attr in ("name", "username", "key", "kind"):
            value = getattr(self, attr, None)
            if value is not None:
                parts.append(f"{attr}={str(value)!r}")
                break
        return _Ref(f"{type(self).__name__}({', '.join(parts)})")

    def _repr_html_(self) -> str:
        """A two-column table for Jupyter; secrets masked, relations shortened."""
        rows = []
        for name in type(self).model_fields:
            if name not in self.__dict__:
                continue
            value = self.__dict__[name]
            if name not in self.model_fields_set and value is None:
                shown = "(not fetched)"
            else:
                shown = "**********" if isinstance(value, SecretStr) else repr(_short(value))
            rows.append(
                f"<tr><th style='text-align:left'>{html.escape(name)}</th><td>{html.escape(shown)}</td></tr>"
            )
        rows.extend(self._extra_html_rows())
        title = html.escape(type(self).__name__)
        return f"<table><caption style='text-align:left'><b>{title}</b></caption>{''.join(rows)}</table>"

    def _extra_html_rows(self) -> list[str]:
        return []
