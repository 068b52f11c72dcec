"""garage client: the SDK every other part of garage talks through.

`AsyncClient` holds the logic and `Client` drives it from blocking code (a notebook too);
`submit` returns a job handle, `map` runs many inputs, `run_batch` runs them through the
Batch API. The wire models are in `garage.contract`, the errors in `garage.client.errors`.
"""

from garage.contract import __version__

from ._async import AsyncClient
from ._batch import BatchItem
from ._handles import AsyncJobHandle
from ._http import http_client
from ._inputs import JobInput, to_spec
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
    "JobInput",
    "LeaseLost",
    "NotFound",
    "RateLimited",
    "ServerError",
    "StreamRestarted",
    "Unavailable",
    "WaitTimeout",
    "WorkerAPI",
    "__version__",
    "http_client",
    "to_spec",
]
