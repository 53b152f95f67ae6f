"""The asynchronous client: `Mikro` is assembled from one mixin per capability (data plane, batches, files,
ingest, pyramids, watches), each in its own module here."""

from mikro.client._mikro import Mikro, connect

__all__ = ["Mikro", "connect"]
