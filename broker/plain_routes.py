"""Plain ASGI routes for the requests every job makes: the submit, the worker's long-poll
and the lease reports.

A job's round trip crosses three of these requests, and FastAPI spends more on each than
the work itself: dependency solving, parameter re-validation, a scan of every route and
six middleware layers, about 0.15 ms a request on the broker's CPU. `BrokerApp` (in
`app.py`) answers the routes declared here before FastAPI sees the request and passes
everything else on. They keep FastAPI's contract:

- the bearer key is checked first (401/403), then the body is parsed from its bytes by
  the route's pydantic model in one pass (400 with the same messages);
- bodies over the size limit get 413, whether or not they announce their length;
- every error is an OpenAI error body from `errors.py`;
- the OpenAPI document lists them, built from the same models (`document`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.responses import Response
from starlette.types import Receive, Scope

from garage.contract import ErrorBody, Role

from .auth import Principal
from .deps import Broker
from .errors import (
    APIError,
    BadRequest,
    PayloadTooLarge,
    api_error_response,
    error_response,
    validation_error_response,
)

__all__ = ["HeaderDoc", "PlainCall", "PlainRoute", "PlainRouter", "document"]

logger = logging.getLogger(__name__)

_NOT_JSON = "the request body must be a JSON object (Content-Type: application/json)"


BodyT = TypeVar("BodyT", bound=BaseModel)


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


@dataclass(frozen=True)
class HeaderDoc:
    """An optional request header a route reads, for the OpenAPI document."""

    name: str
    description: str
    max_length: int


@dataclass(frozen=True)
class PlainRoute:
    method: str
    path: str  # literal segments and "{name}" parameters, e.g. /v1/worker/jobs/{job_id}/fail
    endpoint: Callable[[PlainCall[Any]], Awaitable[Response]]
    body: type[BaseModel]
    reply: type[BaseModel]
    role: Role  # the caller needs this role (or admin)
    summary: str
    status_code: int = 200
    tags: tuple[str, ...] = ()
    headers: tuple[HeaderDoc, ...] = ()
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_segments", tuple(self.path.split("/")))

    @property
    def params(self) -> list[str]:
        return [s[1:-1] for s in self._segments if s.startswith("{")]

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when `path` is this route's, else None."""
        parts = path.split("/")
        if len(parts) != len(self._segments):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(parts, self._segments, strict=True):
            if segment.startswith("{"):
                if not part:
                    return None
                params[segment[1:-1]] = part
            elif part != segment:
                return None
        return params


class PlainCall(Generic[BodyT]):
    """What an endpoint gets: the broker, the authenticated caller, the parsed body, the
    path parameters, and the request's headers and receive channel."""

    __slots__ = ("_headers", "_receive", "body", "broker", "caller", "path_params")

    def __init__(
        self,
        broker: Broker,
        caller: Principal,
        body: BodyT,
        path_params: dict[str, str],
        headers: dict[bytes, bytes],
        receive: Receive,
    ) -> None:
        self.broker = broker
        self.caller = caller
        self.body = body
        self.path_params = path_params
        self._headers = headers
        self._receive = receive

    def header(self, name: str, *, max_length: int) -> str | None:
        value = self._headers.get(name.lower().encode("latin-1"))
        if value is None:
            return None
        if len(value) > max_length:
            raise BadRequest(f"header {name} is longer than {max_length} characters", param=name)
        return value.decode("latin-1")

    async def disconnected(self) -> None:
        """Returns when the client goes away (call it only after the body was read)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass


class PlainRouter:
    def __init__(self, broker: Broker, routes: Sequence[PlainRoute], *, max_body_bytes: int):
        self._broker = broker
        self._max_body_bytes = max_body_bytes
        self.routes = list(routes)
        self._exact: dict[tuple[str, str], PlainRoute] = {}
        self._patterned: list[PlainRoute] = []
        for route in self.routes:
            if route.params:
                self._patterned.append(route)
            else:
                self._exact[route.method, route.path] = route

    def match(self, method: str, path: str) -> tuple[PlainRoute, dict[str, str]] | None:
        """The route for `method` at `path` and its path parameters, if there is one;
        other methods on the same path are FastAPI's."""
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        for route in self._patterned:
            if route.method == method:
                params = route.match(path)
                if params is not None:
                    return route, params
        return None

    async def answer(
        self, route: PlainRoute, params: dict[str, str], scope: Scope, receive: Receive
    ) -> Response:
        headers = dict(scope["headers"])
        try:
            authorization = headers.get(b"authorization")
            caller = await self._broker.auth.authenticate(
                authorization.decode("latin-1") if authorization is not None else None
            )
            caller.require(route.role)
            raw = await self._read_body(headers, receive)
            call = PlainCall(
                self._broker, caller, _parse(route.body, raw, headers), params, headers, receive
            )
            return await route.endpoint(call)
        except APIError as exc:
            return api_error_response(exc)
        except ValidationError as exc:
            return validation_error_response(exc.errors())
        except ClientGone:
            return Response(status_code=400)  # nobody reads it
        except Exception:  # the loop boundary of one request: answer 500, log the cause
            logger.exception("request.failed", extra={"path": scope["path"]})
            return error_response(500, "internal error in the broker", "server_error")

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self._max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
            if not message.get("more_body", False):
                if not chunks:
                    return chunk
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)


def _parse(model: type[BaseModel], raw: bytes, headers: dict[bytes, bytes]) -> BaseModel:
    content_type = headers.get(b"content-type")
    if content_type is not None and not _is_json(content_type):
        raise BadRequest(_NOT_JSON)
    if not raw.strip():
        raise BadRequest(f"the request body is missing: {_NOT_JSON}")
    return model.model_validate_json(raw)


def _is_json(content_type: bytes) -> bool:
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


_ERRORS_DOCUMENTED = (400, 401, 403, 404, 409, 413)


def document(openapi: dict[str, Any], routes: Sequence[PlainRoute]) -> dict[str, Any]:
    """Adds the plain routes to an OpenAPI document FastAPI built, from the same models."""
    models = {(r.body, "validation") for r in routes} | {(r.reply, "serialization") for r in routes}
    models.add((ErrorBody, "serialization"))
    refs, definitions = models_json_schema(
        sorted(models, key=lambda m: (m[0].__name__, m[1])),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    error = {"application/json": {"schema": refs[(ErrorBody, "serialization")]}}
    paths = openapi.setdefault("paths", {})
    for route in routes:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.params
        ] + [
            {
                "name": header.name,
                "in": "header",
                "required": False,
                "description": header.description,
                "schema": {"type": "string", "maxLength": header.max_length},
            }
            for header in route.headers
        ]
        responses: dict[str, Any] = {
            str(route.status_code): {
                "description": "Successful Response",
                "content": {"application/json": {"schema": refs[(route.reply, "serialization")]}},
            }
        }
        for status in _ERRORS_DOCUMENTED:
            responses[str(status)] = {"description": "Error", "content": error}
        paths.setdefault(route.path, {})[route.method.lower()] = {
            "tags": list(route.tags),
            "summary": route.summary,
            "operationId": f"{route.endpoint.__name__}_{route.method.lower()}",
            "parameters": parameters,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
            },
            "responses": responses,
        }
    return openapi
