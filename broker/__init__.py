"""garage broker: the HTTP service on Redis that queues, leases and streams jobs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("garage-ai")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
