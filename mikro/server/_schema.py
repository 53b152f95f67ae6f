"""The strawberry schema of the reference server (prints to ``mikro/schema.graphql``)."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from mikro.server._data_plane import DataPlaneMutation
from mikro.server._errors import ErrorCodes, log_unexpected
from mikro.server._execution import CachingExecutionContext
from mikro.server._files import FileMutation, FileQuery
from mikro.server._mutation import ObjectMutation
from mikro.server._pyramid import PyramidMutation
from mikro.server._query import Query
from mikro.server._subscription import Subscription
from mikro.server._types import BIG_INT_SCALAR, JSON, JSON_SCALAR, BigInt

__all__ = ["build_schema"]


Mutation = merge_types("Mutation", (ObjectMutation, DataPlaneMutation, FileMutation, PyramidMutation))
RootQuery = merge_types("Query", (Query, FileQuery))


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        log_unexpected(errors)


def build_schema() -> strawberry.Schema:
    return _Schema(
        query=RootQuery,
        mutation=Mutation,
        subscription=Subscription,
        # Clients send the same few documents again and again: parse and validate each once.
        extensions=[ErrorCodes, lambda: ParserCache(maxsize=512), lambda: ValidationCache(maxsize=512)],
        config=StrawberryConfig(scalar_map={JSON: JSON_SCALAR, BigInt: BIG_INT_SCALAR}),
        execution_context_class=CachingExecutionContext,
    )
