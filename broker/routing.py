"""Endpoints: every route of the broker, declared once and answered through one path.

An `Endpoint` declares a route: its method and path, the role its caller needs, and the
pydantic models of its body, query and answer. `routes` turns the declarations into
Starlette routes that all run `EndpointApp`:

1. the bearer key is checked (401) and its role (403);
2. path ids, then the query, are checked (400);
3. the body is read up to the size limit (413, whether or not it announces its length)
   and parsed by pydantic straight from its bytes (400);
4. the endpoint gets a `Call` and returns a response; an `APIError` or a pydantic error
   it raises becomes OpenAI's error body, anything else a logged 500.

So authentication, the body limit and the error mapping each have exactly one place, and
the OpenAPI document (`openapi.py`) is built from the same declarations.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from redis.exceptions import ResponseError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from garage.contract import Role

from .auth import Principal
from .errors import (
    APIError,
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    StoreFull,
    Unavailable,
    validation_error_response,
)
from .runtime import Broker
from .store import STORE_DOWN

__all__ = ["Call", "Endpoint", "HeaderDoc", "json_response", "routes"]

logger = logging.getLogger(__name__)

BodyT = TypeVar("BodyT", bound=BaseModel | None)
QueryT = TypeVar("QueryT", bound=BaseModel | None)

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # every id in a path: jobs, batches, files
_NOT_JSON = "the request body must be a JSON object (Content-Type: application/json)"


@dataclass(frozen=True)
class HeaderDoc:
    """A request header an endpoint reads, for the OpenAPI document."""

    name: str
    description: str
    max_length: int


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # Starlette's syntax; every "{name}" is an id matching ID_PATTERN
    handler: Callable[[Call[Any, Any]], Awaitable[Response]]
    summary: str
    tags: tuple[str, ...]
    role: Role | None  # the caller needs this role (or admin); None: no key at all
    body: type[BaseModel] | None = None  # a JSON body parsed into this model
    query: type[BaseModel] | None = None
    reply: type[BaseModel] | None = None  # the JSON answer, for the document
    media_type: str = "application/json"  # of the answer
    status_code: int = 200
    headers: tuple[HeaderDoc, ...] = ()
    form: dict[str, Any] | None = None  # a multipart body's schema, read by the handler
    max_body_bytes: int | None = None  # instead of the broker's limit
    documented: bool = True
    also: tuple[Role, ...] = ()  # other roles that may call it besides `role` (and admin)


class Call(Generic[BodyT, QueryT]):
    """What an endpoint gets: the broker, the caller, the parsed body and query, the path
    ids, and the request (headers, the receive channel for disconnects, a form)."""

    __slots__ = ("_caller", "body", "broker", "path", "query", "request")

    def __init__(
        self,
        broker: Broker,
        caller: Principal | None,
        request: Request,
        body: BodyT,
        query: QueryT,
    ) -> None:
        self.broker = broker
        self._caller = caller
        self.request = request
        self.path: dict[str, str] = request.path_params
        self.body = body
        self.query = query

    @property
    def caller(self) -> Principal:
        """Who calls; every endpoint that declares a role has one."""
        assert self._caller is not None, "an endpoint without a role has no caller"
        return self._caller

    def header(self, name: str, *, max_length: int) -> str | None:
        value = self.request.headers.get(name)
        if value is not None and len(value) > max_length:
            raise BadRequest(f"header {name} is longer than {max_length} characters", param=name)
        return value

    async def disconnected(self) -> None:
        """Returns when the client goes away (call it only after the body was read)."""
        while (await self.request.receive())["type"] != "http.disconnect":
            pass


class _Limited:
    """The request's receive channel, refusing a body past `limit` bytes."""

    __slots__ = ("_limit", "_receive", "_seen")

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                raise PayloadTooLarge(f"request body over the limit of {self._limit} bytes")
        return message


class EndpointApp:
    """The ASGI app of one endpoint: the steps in the module docstring."""

    def __init__(self, endpoint: Endpoint, broker: Broker) -> None:
        self.endpoint = endpoint
        self.broker = broker
        self.limit = endpoint.max_body_bytes or broker.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, _Limited(receive, self.limit))
        try:
            response = await self._answer(request)
        except APIError as exc:
            response = exc.response()
        except ValidationError as exc:
            response = validation_error_response(exc.errors())
        except ClientDisconnect:
            return  # nobody to answer
        except STORE_DOWN as exc:  # a moment without Redis is not a bug: no traceback
            logger.warning("request.store_down", extra={"path": scope["path"], "error": str(exc)})
            response = Unavailable(
                "the broker's store cannot be reached; retry shortly",
                headers={"Retry-After": "1"},
            ).response()
        except ResponseError as exc:
            if "OOM command not allowed" not in str(exc):
                logger.exception("request.failed", extra={"path": scope["path"]})
                response = APIError("internal error in the broker").response()
            else:  # Redis is at its maxmemory: it refused the script's first write, so
                # (as Redis does for scripts) none of the script's writes happened
                logger.warning("request.store_full", extra={"path": scope["path"]})
                response = StoreFull(
                    "the broker's store is full; retry once running work frees room",
                    headers={"Retry-After": "30"},
                ).response()
        except Exception:  # the boundary of one request: log the cause, answer 500
            logger.exception("request.failed", extra={"path": scope["path"]})
            response = APIError("internal error in the broker").response()
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        endpoint = self.endpoint
        caller = None
        if endpoint.role is not None:
            caller = await self.broker.auth.authenticate(request.headers.get("authorization"))
            caller.require(endpoint.role, *endpoint.also)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise PayloadTooLarge(f"request body over the limit of {self.limit} bytes")
        for name, value in request.path_params.items():
            if not ID_PATTERN.match(value):
                raise BadRequest(f"not a valid {name}: {value[:80]!r}", param=name)
        query = None
        if endpoint.query is not None:
            query = endpoint.query.model_validate(dict(request.query_params))
        body = None
        if endpoint.body is not None:
            body = await self._body(request, endpoint.body)
        return await endpoint.handler(Call(self.broker, caller, request, body, query))

    async def _body(self, request: Request, model: type[BaseModel]) -> BaseModel:
        content_type = request.headers.get("content-type")
        if content_type is not None and not _is_json(content_type):
            raise BadRequest(_NOT_JSON)
        raw = await request.body()
        if not raw.strip():
            raise BadRequest(f"the request body is missing: {_NOT_JSON}")
        return model.model_validate_json(raw)


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def json_response(
    model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer straight from pydantic's serializer."""
    return Response(
        model.model_dump_json(), status_code=status_code, media_type="application/json",
        headers=headers,
    )  # fmt: skip


def routes(endpoints: Sequence[Endpoint], broker: Broker) -> list[Route]:
    """Starlette routes for the endpoints, in the order given (put the hot ones first),
    then one per path that answers any other method with 405."""
    found = [Route(e.path, EndpointApp(e, broker), methods=[e.method]) for e in endpoints]
    methods: dict[str, list[str]] = {}
    for endpoint in endpoints:
        methods.setdefault(endpoint.path, []).append(endpoint.method)
    found += [Route(path, MethodNotAllowed(allowed)) for path, allowed in methods.items()]
    return found
