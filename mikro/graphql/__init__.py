"""GraphQL transport: HTTP POST with httpx, retries with tenacity, errors mapped to mikro's exceptions.

Subscriptions (graphql-transport-ws over httpx-ws) live beside this in their own modules.
"""

from mikro.graphql._blocking import BlockingTransport
from mikro.graphql._errors import error_from_graphql
from mikro.graphql._network import async_http_transport
from mikro.graphql._retry import RetryPolicy
from mikro.graphql._subscriptions import (
    EventStream,
    ReconnectPolicy,
    SubscriptionClient,
    SubscriptionSettings,
)
from mikro.graphql._tls import tls_context
from mikro.graphql._transport import AsyncTransport, new_idempotency_key, operation_type

__all__ = [
    "AsyncTransport",
    "BlockingTransport",
    "EventStream",
    "ReconnectPolicy",
    "RetryPolicy",
    "SubscriptionClient",
    "SubscriptionSettings",
    "async_http_transport",
    "error_from_graphql",
    "new_idempotency_key",
    "operation_type",
    "tls_context",
]
