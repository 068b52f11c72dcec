"""Errors on the wire: OpenAI's error body, and the one list of error codes.

Every error the broker answers has the body `{"error": {"message", "type", "param",
"code"}}`. `code` is always an `ErrorCode`; the broker raises with these, the client maps
them to exceptions, and the Lua scripts get the codes they write from here too
(`broker/store/scripts.py` fills them in), so no side keeps its own copy of a code.
`type` follows OpenAI's error types, so OpenAI clients read the body as they would
OpenAI's.
"""

from __future__ import annotations

from enum import StrEnum

from ._base import Out

__all__ = ["ErrorBody", "ErrorCode", "ErrorDetail", "JobErrorType"]


class ErrorCode(StrEnum):
    """What went wrong, for programs to act on; the message is for people."""

    # the request
    invalid_request = "invalid_request"  # the body, a parameter or a header is malformed
    invalid_batch_line = "invalid_batch_line"  # a line of a batch input file is malformed
    payload_too_large = "payload_too_large"  # the body is over the broker's limit
    request_timeout = "request_timeout"  # the body did not arrive in time
    # the caller
    invalid_api_key = "invalid_api_key"  # no key, a malformed one, or an unknown one
    forbidden = "forbidden"  # the key's role may not do this
    # the resource
    not_found = "not_found"  # no such job, batch, file or key (or not yours)
    method_not_allowed = "method_not_allowed"
    conflict = "conflict"  # the resource's state does not allow this
    job_ended = "job_ended"  # the job already reached a terminal status
    lease_lost = "lease_lost"  # a worker reported on a lease it no longer holds
    # capacity
    unavailable = "unavailable"  # the broker cannot serve now (its store is down)
    store_full = "store_full"  # the broker's store is nearly full: no new work for now
    model_not_served = "model_not_served"  # no live worker serves the model
    rate_limit_exceeded = "rate_limit_exceeded"  # the key's submits a minute are used up
    too_many_active_jobs = "too_many_active_jobs"  # the key has its most jobs queued or running
    # how a job ended without a result
    cancelled = "cancelled"  # cancelled by its owner (or its client went away)
    start_deadline_exceeded = "start_deadline_exceeded"  # no worker started it in time
    deadline_exceeded = "deadline_exceeded"  # it ran past its deadline
    attempts_exhausted = "attempts_exhausted"  # its last attempt's lease ran out
    worker_lost = "worker_lost"  # the worker was lost after text was already streamed
    job_failed = "job_failed"  # the backend or the worker failed it
    batch_cancelled = "batch_cancelled"  # its batch was cancelled before it ran
    batch_expired = "batch_expired"  # its batch's completion window ran out first
    job_lost = "job_lost"  # its job was gone (past its retention) when its result was read
    unfinished = "unfinished"  # the caller stopped waiting before it ended
    internal_error = "internal_error"  # a fault in the broker


class JobErrorType(StrEnum):
    """The `type` of a job's error (`Job.error.type`): who ended it, and how."""

    backend_rejected = "backend_rejected"  # the backend refused the request (a 4xx)
    backend_unavailable = "backend_unavailable"  # the backend failed or was unreachable
    worker_error = "worker_error"  # the worker itself failed
    handback = "handback"  # the worker gave the job back unfinished (not an attempt)
    lease_expired = "lease_expired"  # the worker stopped reporting (lost, or cut off)
    cancelled = "cancelled"
    expired = "expired"
    timeout = "timeout"


class ErrorDetail(Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(Out):
    error: ErrorDetail
