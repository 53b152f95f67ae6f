"""The mikro reference server: strawberry GraphQL on uvicorn, SQLAlchemy persistence, obstore objects.

Install with the ``server`` extra; start it with ``mikro serve``.
"""

from mikro.server._app import create_app
from mikro.server._pubsub import EventMessage, InMemoryPubSub, LiveEvents, PubSub
from mikro.server._schema import build_schema
from mikro.server._serve import add_user, rotate_token, serve
from mikro.server._settings import Settings

__all__ = [
    "EventMessage",
    "InMemoryPubSub",
    "LiveEvents",
    "PubSub",
    "Settings",
    "add_user",
    "build_schema",
    "create_app",
    "rotate_token",
    "serve",
]
