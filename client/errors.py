"""Errors the client raises, a small tree to catch at any level:

GarageError
├── APIError (status, code, message from the broker)
│   ├── BadRequest (400) · AuthError (401, 403) · NotFound (404)
│   ├── LeaseLost (409, a worker's lease moved on) · Conflict (409)
│   ├── RateLimited (429) · Unavailable (503, no capacity)
│   └── ServerError (5xx)
├── BrokerUnreachable (no HTTP answer at all)
└── JobError (job) · JobFailed · JobCancelled · JobExpired · WaitTimeout
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from garage.contract import Job

__all__ = [
    "APIError",
    "AuthError",
    "BadRequest",
    "BrokerUnreachable",
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
    "StreamRestarted",
    "Unavailable",
    "WaitTimeout",
    "error_for_status",
]


class GarageError(Exception):
    """Base of every error garage's client raises."""


class APIError(GarageError):
    """The broker answered with an error."""

    def __init__(self, status: int, message: str, *, code: str | None = None, type: str = ""):
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.code = code
        self.type = type


class BadRequest(APIError):
    """The request was malformed or invalid."""


class AuthError(APIError):
    """The key is missing, wrong, or not allowed to do this."""


class NotFound(APIError):
    """No such job, key or resource (or it is not yours)."""


class LeaseLost(APIError):
    """A worker reported on a lease it no longer holds."""


class Conflict(APIError):
    """The resource is in a state that does not allow this."""


class RateLimited(APIError):
    """The key's quotas refused the request (too many submits a minute, or too many jobs
    queued or running); `retry_after_s` says when to try again."""

    retry_after_s: float | None = None


class Unavailable(APIError):
    """No capacity: no live worker serves the model, or the broker is not ready."""


class ServerError(APIError):
    """The broker failed."""


class BrokerUnreachable(GarageError):
    """No HTTP answer from the broker (connection refused, reset, timed out)."""


class JobError(GarageError):
    """A job did not produce a result."""

    def __init__(self, message: str, job: Job | None = None):
        super().__init__(message)
        self.job = job


class JobFailed(JobError):
    """The job failed (non-retryable error, or attempts used up)."""


class JobCancelled(JobError):
    """The job was cancelled."""


class JobExpired(JobError):
    """No worker started the job before its start deadline."""


class WaitTimeout(JobError):
    """The job did not finish within the time the caller waited."""


class StreamRestarted(JobError):
    """The job's text started over (its worker was lost) after some text was already read.

    The job goes on; `attempt` will produce the text from the start. Resume with
    `handle.stream(after=exc.event_id)` to read the new attempt's text only.
    """

    def __init__(self, message: str, *, attempt: int, event_id: str):
        super().__init__(message)
        self.attempt = attempt
        self.event_id = event_id


def error_for_status(status: int, body: Any, retry_after: str | None = None) -> APIError:
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        message = str(detail.get("message") or "")
        code, kind = detail.get("code"), str(detail.get("type") or "")
    else:
        message, code, kind = str(body)[:500], None, ""
    cls: type[APIError]
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFound
    elif status == 409:
        cls = LeaseLost if code == "lease_lost" else Conflict
    elif status == 429:
        cls = RateLimited
    elif status == 503:
        cls = Unavailable
    elif status >= 500:
        cls = ServerError
    else:
        cls = BadRequest
    error = cls(status, message, code=code, type=kind)
    if isinstance(error, RateLimited) and retry_after is not None:
        try:
            error.retry_after_s = max(0.0, float(retry_after))
        except ValueError:  # an HTTP date: not one garage sends
            error.retry_after_s = None
    return error
