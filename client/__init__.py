"""garage client: the SDK every other part of garage talks through.

`AsyncClient` holds the logic and `Client` drives it from blocking code (a notebook too);
`submit` returns a job handle, `map` runs many inputs. The wire models are in
`garage.client.schemas`, the errors in `garage.client.errors`.
"""

from importlib.metadata import PackageNotFoundError, version

from ._async import AsyncClient
from ._batch import BatchItem
from ._handles import AsyncJobHandle
from ._sync import Client, JobHandle
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
    StreamRestarted,
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
    "AsyncJobHandle",
    "AuthError",
    "BadRequest",
    "BatchItem",
    "BrokerUnreachable",
    "Client",
    "ClientSettings",
    "Conflict",
    "GarageError",
    "JobCancelled",
    "JobError",
    "JobExpired",
    "JobFailed",
    "JobHandle",
    "LeaseLost",
    "NotFound",
    "RateLimited",
    "ServerError",
    "StreamRestarted",
    "Unavailable",
    "WaitTimeout",
    "WorkerAPI",
]
