"""HTTP errors and the one place that turns them into OpenAI-style error bodies.

    APIError (status, type, code)
    ├── BadRequest (400) · Unauthorized (401) · Forbidden (403) · NotFound (404)
    ├── LeaseLost (409) · Conflict (409) · PayloadTooLarge (413)
    ├── RateLimited (429, with Retry-After)
    ├── Unavailable (503)
    └── StoreFull (507, with Retry-After)

Every error the broker answers, a validation failure or malformed JSON included, has the
body `{"error": {"message", "type", "param", "code"}}` with a code from
`garage.contract.ErrorCode`, so OpenAI clients and garage's own client read it alike.
Endpoints raise these; `routing.py` answers them, and `not_found` and
`MethodNotAllowed` answer what the router itself refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from garage.contract import ErrorCode

__all__ = [
    "APIError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "LeaseLost",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "Unavailable",
    "error_response",
    "not_found",
    "validation_error_response",
]


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


class RateLimited(APIError):
    status, type, code = 429, "rate_limit_error", ErrorCode.rate_limit_exceeded


class Unavailable(APIError):
    status, type, code = 503, "service_unavailable", ErrorCode.unavailable


class StoreFull(APIError):
    status, type, code = 507, "service_unavailable", ErrorCode.store_full


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


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a path no route serves."""
    response = NotFound(f"no such endpoint: {scope['method']} {scope['path']}").response()
    await response(scope, receive, send)


class MethodNotAllowed:
    """The answer to a method a route's path does not take. A class, not a function:
    Starlette mounts a plain function as a GET endpoint, and an instance as an ASGI app."""

    def __init__(self, methods: list[str]) -> None:
        self.allowed = {"Allow": ", ".join(methods)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            405,
            f"{scope['method']} is not allowed on {scope['path']}; use {self.allowed['Allow']}",
            "invalid_request_error",
            ErrorCode.method_not_allowed,
            headers=self.allowed,
        )
        await response(scope, receive, send)
