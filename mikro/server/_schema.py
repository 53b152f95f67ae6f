"""The strawberry schema of the reference server (prints to ``mikro/schema.graphql``)."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig

from mikro.server._errors import ErrorCodes, log_unexpected
from mikro.server._mutation import Mutation
from mikro.server._query import Query
from mikro.server._subscription import Subscription
from mikro.server._types import JSON, JSON_SCALAR

__all__ = ["build_schema"]


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        log_unexpected(errors)


def build_schema() -> strawberry.Schema:
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[ErrorCodes],
        config=StrawberryConfig(scalar_map={JSON: JSON_SCALAR}),
    )
