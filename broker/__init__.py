"""garage broker: the HTTP service on Redis that queues, leases and streams jobs."""

from garage.contract import __version__

__all__ = ["__version__"]
