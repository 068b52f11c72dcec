"""The error body every endpoint returns, in OpenAI's shape."""

from __future__ import annotations

from ._base import Out

__all__ = ["ErrorBody", "ErrorDetail"]


class ErrorDetail(Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(Out):
    error: ErrorDetail
