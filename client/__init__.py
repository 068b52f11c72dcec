"""garage client: the SDK every other part of garage talks through.

`AsyncClient` holds the logic; the wire models are in `garage.client.schemas`, the errors
in `garage.client.errors`.
"""

from importlib.metadata import PackageNotFoundError, version

from ._async import AsyncClient
from ._worker_api import WorkerAPI
from .errors import (
    APIError,
    AuthError,
    BadRequest,
    BrokerUnreachable,
    Conflict,
    GarageError,
    JobCancelled,
    JobError,
    JobExpired,
    JobFailed,
    LeaseLost,
    NotFound,
    RateLimited,
    ServerError,
    Unavailable,
    WaitTimeout,
)
from .settings import ClientSettings

try:
    __version__ = version("garage-ai")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "APIError",
    "AsyncClient",
    "AuthError",
    "BadRequest",
    "BrokerUnreachable",
    "ClientSettings",
    "Conflict",
    "GarageError",
    "JobCancelled",
    "JobError",
    "JobExpired",
    "JobFailed",
    "LeaseLost",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Unavailable",
    "WaitTimeout",
    "WorkerAPI",
]
