"""garage client: the SDK every other part of garage talks through.

`AsyncClient` holds the logic; the wire models are in `garage.client.schemas`, the errors
in `garage.client.errors`.
"""

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
