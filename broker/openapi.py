"""The OpenAPI 3.1 document, built from the endpoint declarations and their pydantic models.

Every route is declared once, as an `Endpoint` (`routing.py`); this module reads the same
declarations, so the document cannot drift from what the broker answers: the body, query
and answer schemas are pydantic's own JSON schemas of the models the broker parses with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from garage.contract import ErrorBody

from .routing import Endpoint

__all__ = ["document"]

_ERRORS = {
    400: "Malformed request",
    401: "No key, or a wrong one",
    403: "The key's role may not do this",
    404: "No such resource (or not yours)",
    408: "The request's head or body stopped arriving",
    409: "The resource's state does not allow this: the lease moved on, the job ended, or "
    "another worker key's live worker has this worker id",
    413: "Body over the limit",
    429: "Over one of the key's quotas: submits a minute, jobs active, live workers (Retry-After)",
    503: "Cannot serve now: no live worker serves the model, or the store is unreachable "
    "(Retry-After)",
    507: "The store is nearly full: no new work until room comes back (Retry-After)",
}
_KEYED = (401, 403, 409, 429)  # answers only a request with a key can get
_REF = "#/components/schemas/{model}"


def document(endpoints: Sequence[Endpoint], *, title: str, version: str, summary: str) -> dict:
    """The OpenAPI document of `endpoints` (those marked `documented`)."""
    shown = [e for e in endpoints if e.documented]
    models: set[tuple[type[BaseModel], str]] = {(ErrorBody, "serialization")}
    for e in shown:
        for model in (e.body, e.query):
            if model is not None:
                models.add((model, "validation"))
        if e.reply is not None:
            models.add((e.reply, "serialization"))
    refs, definitions = models_json_schema(
        sorted(models, key=lambda m: (m[0].__name__, m[1])),  # type: ignore[arg-type]
        ref_template=_REF,
    )
    schemas = definitions.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for e in shown:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, refs, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "summary": summary},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(e: Endpoint, refs: dict[Any, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}
        for name in _path_params(e.path)
    ]  # fmt: skip
    if e.query is not None:
        # query parameters are the model's fields
        schema = schemas[refs[(e.query, "validation")]["$ref"].rsplit("/", 1)[1]]
        required = set(schema.get("required", ()))
        for name, field in schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": field}
            )
    for header in e.headers:
        parameters.append(
            {
                "name": header.name,
                "in": "header",
                "required": False,
                "description": header.description,
                "schema": {"type": "string", "maxLength": header.max_length},
            }
        )
    answer: dict[str, Any] = {"description": "Success"}
    if e.reply is not None:
        answer["content"] = {e.media_type: {"schema": refs[(e.reply, "serialization")]}}
    elif e.status_code != 204:
        answer["content"] = {e.media_type: {}}
    error = {"application/json": {"schema": refs[(ErrorBody, "serialization")]}}
    responses: dict[str, Any] = {str(e.status_code): answer}
    for status, description in _ERRORS.items():
        if status in _KEYED and e.role is None:
            continue
        responses[str(status)] = {"description": description, "content": error}
    operation: dict[str, Any] = {
        "tags": list(e.tags),
        "summary": e.summary,
        "operationId": f"{e.handler.__name__}_{e.method.lower()}",
        "parameters": parameters,
        "responses": responses,
    }
    if e.handler.__doc__:
        operation["description"] = " ".join(e.handler.__doc__.split())
    if e.role is not None:
        operation["security"] = [{"bearer": []}]
    if e.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(e.body, "validation")]}},
        }
    elif e.form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": e.form}},
        }
    return operation


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
