"""HTTP errors and the one place that turns them into OpenAI-style error bodies.

    APIError (status, type, code)
    ├── BadRequest (400) · Unauthorized (401) · Forbidden (403) · NotFound (404)
    ├── LeaseLost (409) · Conflict (409) · PayloadTooLarge (413)
    └── Unavailable (503)

Every error the broker answers, a validation failure or malformed JSON included, has the
body `{"error": {"message", "type", "param", "code"}}` with a code from
`garage.contract.ErrorCode`, so OpenAI clients and garage's own client read it alike.
Endpoints raise these; `routing.py` answers them, and `exception_handlers` answers what
the router itself refuses (an unknown path or method).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from garage.contract import ErrorCode

__all__ = [
    "APIError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "LeaseLost",
    "NotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "Unavailable",
    "error_response",
    "exception_handlers",
    "validation_error_response",
]

logger = logging.getLogger(__name__)


class APIError(Exception):
    status = 500
    type = "server_error"
    code = ErrorCode.internal_error

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})
        if code is not None:
            self.code = code

    def response(self) -> Response:
        return error_response(
            self.status, self.message, self.type, self.code, self.param, self.headers
        )


class BadRequest(APIError):
    status, type, code = 400, "invalid_request_error", ErrorCode.invalid_request


class Unauthorized(APIError):
    status, type, code = 401, "authentication_error", ErrorCode.invalid_api_key


class Forbidden(APIError):
    status, type, code = 403, "permission_error", ErrorCode.forbidden


class NotFound(APIError):
    status, type, code = 404, "not_found_error", ErrorCode.not_found


class LeaseLost(APIError):
    status, type, code = 409, "conflict_error", ErrorCode.lease_lost


class Conflict(APIError):
    status, type, code = 409, "conflict_error", ErrorCode.conflict


class PayloadTooLarge(APIError):
    status, type, code = 413, "invalid_request_error", ErrorCode.payload_too_large


class Unavailable(APIError):
    status, type, code = 503, "service_unavailable", ErrorCode.unavailable


def error_response(
    status: int,
    message: str,
    type_: str,
    code: ErrorCode,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code.value}}
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, headers=extra or None)


def _describe(error: Mapping[str, Any]) -> tuple[str, str | None]:
    loc = [str(part) for part in error.get("loc", ())]
    param = ".".join(loc) or None
    if error.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {error.get('ctx', {}).get('error')}", None
    if not param and error.get("type") in ("model_attributes_type", "model_type", "dict_type"):
        return "the request body must be a JSON object (Content-Type: application/json)", None
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{param}: {message}" if param else message), param


def validation_error_response(errors: Sequence[Mapping[str, Any]]) -> Response:
    """400 naming the first problem pydantic found, and how many more there are."""
    message, param = _describe(errors[0]) if errors else ("invalid request", None)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(400, message, "invalid_request_error", ErrorCode.invalid_request, param)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return NotFound(f"no such endpoint: {request.method} {request.url.path}").response()
    if exc.status_code == 405:
        return error_response(
            405,
            f"{request.method} is not allowed on {request.url.path}",
            "invalid_request_error",
            ErrorCode.method_not_allowed,
            headers=exc.headers,
        )
    return error_response(
        exc.status_code, str(exc.detail), "invalid_request_error", ErrorCode.invalid_request
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.error("request.failed", exc_info=exc, extra={"path": request.url.path})
    return APIError("internal error in the broker").response()


exception_handlers = {HTTPException: _on_http_error, Exception: _on_unexpected}
