"""JSON responses straight from pydantic's serializer.

Handlers return these instead of models so FastAPI does not validate and re-encode every
response; the `response_model` on each route still documents the shape in OpenAPI.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response

__all__ = ["model_response"]


def model_response(
    model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
