"""The contract every backend adapter implements, and what it returns or raises.

An adapter turns one job (its kind plus an OpenAI-shaped request body) into calls on the
rig's inference server and hands back one OpenAI-shaped response, whatever the server
speaks. Leases, retries and reporting belong to the runner; an adapter only classifies
what went wrong:

    BackendError                  retryable tells the runner what to do
    ├── BackendRejected           the backend refused this job (HTTP 4xx): fail it for good
    └── BackendUnavailable        down, timed out, 5xx, or the stream broke: retry the job

Cancellation belongs to the caller: cancel the task running `run()`. Adapters let
CancelledError through and their HTTP stream closes on the way out, so the backend sees the
client leave and stops generating.

The helpers at the bottom (`open_stream`, `guard`) are the only place where httpx's
exceptions turn into these errors, and both adapters use them for that.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import httpx

from garage.contract import JobError, Kind

__all__ = [
    "PING_TIMEOUT_S",
    "Backend",
    "BackendError",
    "BackendRejected",
    "BackendResult",
    "BackendUnavailable",
    "ErrorParser",
    "OnText",
    "answers",
    "error_for_status",
    "fetch_body",
    "guard",
    "open_stream",
    "read_body",
    "reported_count",
    "request_model",
]

logger = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0  # a health check must answer fast or the backend counts as down

OnText = Callable[[str], Awaitable[None]]
"""Called with each piece of generated text, in order, as the backend streams it."""


@dataclass(frozen=True, slots=True)
class BackendResult:
    """One finished job: the OpenAI-shaped response and what it cost.

    The token counts are the backend's own, None where it reported nothing (a server that
    ignores `stream_options.include_usage`, say): never a zero that nobody counted. The
    worker fills those in (`worker/usage.py`)."""

    result: dict[str, Any]  # chat.completion, text_completion or an embedding list
    prompt_tokens: int | None
    completion_tokens: int | None
    wall_ms: float  # request sent to last byte read, measured here
    backend_ms: float | None = None  # the backend's own total (Ollama), else the wall time
    first_token_ms: float | None = None  # request sent to first text piece; None if no text
    eval_ms: float | None = None  # time spent generating, for tokens/s (first token to end)


class Backend(Protocol):
    """An inference server on this rig, as the worker sees it."""

    async def list_models(self) -> list[str]:
        """Names of the models this backend can serve now."""
        ...

    async def ping(self) -> bool:
        """Cheap health check: True when the backend answers. Never raises."""
        ...

    async def count_tokens(self, model: str, text: str) -> int | None:
        """Tokens in `text` by `model`'s own tokenizer, where the backend exposes one;
        None where it does not or cannot answer now. Never raises."""
        ...

    async def run(
        self, kind: Kind, request: dict[str, Any], on_text: OnText | None = None
    ) -> BackendResult:
        """Run one job and return its OpenAI-shaped response.

        `request` is the OpenAI-shaped body for `kind` and names its `model`. Chat and
        completion stream from the backend, and each text piece goes to `on_text` as it
        arrives. Raises BackendRejected or BackendUnavailable.
        """
        ...


class BackendError(Exception):
    """The backend could not run a job; carries the backend's own message."""

    retryable: ClassVar[bool] = True
    error_type: ClassVar[str] = "backend_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status  # the backend's HTTP status, None when it never answered
        self.code = code  # the backend's error code, when it gave one

    def to_job_error(self) -> JobError:
        return JobError(message=self.message, type=self.error_type, code=self.code)


class BackendRejected(BackendError):
    """The backend refused this job (unknown model, context too long, bad parameters)."""

    retryable = False
    error_type = "backend_rejected"


class BackendUnavailable(BackendError):
    """The backend is down, timed out, failed (5xx) or broke off the stream."""

    retryable = True
    error_type = "backend_unavailable"


# 4xx statuses that say nothing against the job itself: the rig's own credentials refused
# (401, 403), a timeout (408), a rate limit (429), Ollama's "request canceled" (499).
# Another try, here or on another worker, may well succeed.
_RETRYABLE_4XX = frozenset({401, 403, 408, 429, 499})


def error_for_status(status: int, message: str, code: str | None = None) -> BackendError:
    """The error for an HTTP error reply: most 4xx reject the job, the rest are retryable."""
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return BackendRejected(message, status=status, code=code)
    return BackendUnavailable(f"HTTP {status}: {message}", status=status, code=code)


async def answers(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> bool:
    """Whether a GET of `url` succeeds within PING_TIMEOUT_S: a backend's health check."""
    try:
        response = await http.get(url, headers=headers, timeout=PING_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return response.is_success


def reported_count(value: Any) -> int | None:
    """A token count as a server reported it: a non-negative int, else None (absent, null,
    or not a count)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def request_model(request: dict[str, Any]) -> str:
    """The model a request names; a request without one is rejected."""
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise BackendRejected("the request names no model")
    return model


ErrorParser = Callable[[bytes], tuple[str, str | None]]
"""Reads a backend's error body into (message, code)."""


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    parse_error: ErrorParser,
    **kwargs: Any,
) -> AsyncIterator[httpx.Response]:
    """Send a request and yield its response with the body still unread.

    An HTTP error status becomes the BackendError `error_for_status` picks, and a transport
    failure becomes BackendUnavailable. Only the request itself is guarded: exceptions from
    the caller's block (its `on_text`, say) pass through untouched. The response is closed
    on the way out, which drops the connection when the body was not read to the end.
    """
    try:
        response = await http.send(http.build_request(method, url, **kwargs), stream=True)
    except httpx.RequestError as exc:
        raise BackendUnavailable(f"{method} {url}: {_describe(exc)}") from exc
    try:
        if response.is_error:
            body = await _read(response)
            message, code = parse_error(body)
            logger.debug("backend.http_error", extra={"url": url, "status": response.status_code})
            raise error_for_status(response.status_code, message, code)
        yield response
    finally:
        await response.aclose()


async def read_body(response: httpx.Response) -> bytes:
    """Read the rest of a response opened by `open_stream`."""
    return await _read(response)


async def fetch_body(
    http: httpx.AsyncClient, method: str, url: str, *, parse_error: ErrorParser, **kwargs: Any
) -> bytes:
    """One whole request and its body, with `open_stream`'s error handling."""
    async with open_stream(http, method, url, parse_error=parse_error, **kwargs) as response:
        return await read_body(response)


_T = TypeVar("_T")


async def guard(items: AsyncIterator[_T]) -> AsyncIterator[_T]:
    """Re-yield a response's lines or events, turning transport failures into
    BackendUnavailable (a connection cut mid-stream, a read timeout). Wrap it in
    `contextlib.aclosing` so it is closed when the caller stops early."""
    try:
        async for item in items:
            yield item
    except httpx.RequestError as exc:
        raise BackendUnavailable(f"stream broken: {_describe(exc)}") from exc


async def _read(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.RequestError as exc:
        raise BackendUnavailable(f"reading the response: {_describe(exc)}") from exc


def _describe(exc: httpx.RequestError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
