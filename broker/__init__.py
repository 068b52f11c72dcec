"""garage broker: the HTTP service on Redis that queues, leases and streams jobs."""

from garage.client import __version__

__all__ = ["__version__"]
