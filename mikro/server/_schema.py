"""The strawberry schema of the reference server (prints to ``mikro/schema.graphql``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.scalars import Base64
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from mikro.server._data_plane import DataPlaneMutation
from mikro.server._errors import ErrorCodes, log_unexpected
from mikro.server._execution import CachingExecutionContext
from mikro.server._files import FileMutation, FileQuery
from mikro.server._fingerprints import FingerprintQuery
from mikro.server._inputs import BASE64_SCALAR
from mikro.server._limits import QueryCache, QueryLimits
from mikro.server._mutation import ObjectMutation
from mikro.server._pyramid import PyramidMutation
from mikro.server._query import Query
from mikro.server._settings import Settings
from mikro.server._subscription import Subscription
from mikro.server._types import BIG_INT_SCALAR, JSON, JSON_SCALAR, BigInt

__all__ = ["build_schema"]


Mutation = merge_types("Mutation", (ObjectMutation, DataPlaneMutation, FileMutation, PyramidMutation))
RootQuery = merge_types("Query", (Query, FileQuery, FingerprintQuery))


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        log_unexpected(errors)


def _per_request(limiter: SchemaExtension) -> Callable[[], SchemaExtension]:
    """A factory of shallow copies: strawberry gives each request's extensions its own execution
    context, and building a limiter's validation rules once is cheaper than once per request."""
    return lambda: copy.copy(limiter)


def build_schema(settings: Settings | None = None, cache: QueryCache | None = None) -> strawberry.Schema:
    """The schema, its requests limited by ``settings``; ``cache`` holds parsed documents (the HTTP
    gate parses through it too, to tell mutations apart)."""
    settings = settings or Settings()
    # Clients send the same few documents again and again: parse and validate each once (QueryLimits).
    cache = cache or QueryCache(settings.query_cache_bytes, settings.max_query_tokens)
    limiters: list[SchemaExtension] = [
        QueryDepthLimiter(max_depth=settings.max_query_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
    ]
    return _Schema(
        query=RootQuery,
        mutation=Mutation,
        subscription=Subscription,
        # Order matters: the limiters set the parse options and validation rules QueryLimits applies.
        extensions=[
            ErrorCodes,
            *(_per_request(limiter) for limiter in limiters),
            lambda: QueryLimits(settings, cache),
        ],
        config=StrawberryConfig(
            scalar_map={JSON: JSON_SCALAR, BigInt: BIG_INT_SCALAR, Base64: BASE64_SCALAR}
        ),
        execution_context_class=CachingExecutionContext,
    )
