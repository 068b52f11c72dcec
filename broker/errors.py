"""HTTP errors and the one place that turns them into OpenAI-style error bodies.

    APIError (status, type, code)
    ├── BadRequest (400) · Unauthorized (401) · Forbidden (403) · NotFound (404)
    ├── LeaseLost (409) · Conflict (409) · PayloadTooLarge (413)
    └── Unavailable (503)

Every error the broker answers, a validation failure or malformed JSON included, has the
body `{"error": {"message", "type", "param", "code"}}`, so OpenAI clients can read it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    "api_error_response",
    "error_response",
    "install_error_handlers",
    "validation_error_response",
]

logger = logging.getLogger(__name__)


class APIError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequest(APIError):
    status, type = 400, "invalid_request_error"


class Unauthorized(APIError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(APIError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(APIError):
    status, type, code = 404, "not_found_error", "not_found"


class LeaseLost(APIError):
    status, type, code = 409, "conflict_error", "lease_lost"


class Conflict(APIError):
    status, type, code = 409, "conflict_error", "conflict"


class PayloadTooLarge(APIError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class Unavailable(APIError):
    status, type, code = 503, "service_unavailable", "unavailable"


def error_response(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _describe(error: dict[str, Any]) -> tuple[str, str | None]:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(loc) or None
    if error.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {error.get('ctx', {}).get('error')}", None
    if not param and error.get("type") in ("model_attributes_type", "model_type", "dict_type"):
        return "the request body must be a JSON object (Content-Type: application/json)", None
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{param}: {message}" if param else message), param


def api_error_response(exc: APIError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.type, exc.code, exc.param)


def validation_error_response(errors: Sequence[Any]) -> JSONResponse:
    """400 naming the first problem pydantic (or FastAPI) found, and how many more."""
    message, param = _describe(errors[0]) if errors else ("invalid request", None)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(400, message, "invalid_request_error", "invalid_request", param)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return api_error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc.errors())


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kinds = {404: "not_found_error", 405: "invalid_request_error"}
    return error_response(
        exc.status_code, str(exc.detail), kinds.get(exc.status_code, "invalid_request_error")
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("request.failed", extra={"path": request.url.path})
    return error_response(500, "internal error in the broker", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
