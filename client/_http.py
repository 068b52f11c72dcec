"""The one place the client, and the worker through `WorkerAPI`, send HTTP to the broker.

Every call goes through one `httpx.AsyncClient`: JSON calls, event streams (httpx-sse) and
file uploads. Its transport is `Http11Transport` (`_transport.py`), keep-alive HTTP/1.1
parsed by httptools, which costs a tenth of httpx's default transport in client CPU
(docs/benchmarks.md). Where a proxy applies to the URL (`HTTP(S)_PROXY`, `NO_PROXY`), the
client keeps httpx's own transport, which speaks to proxies. A caller that passes its own
`httpx.AsyncClient` (a test's ASGI transport, say) has every call sent through it.

Request/response calls (submit, wait, polls, lease reports) are handed straight to the
transport as `httpx.Request`s when the client is garage's own: the `AsyncClient` layer above
it (redirects, cookies, auth flows, event hooks) does nothing for these calls and costs
about 100 µs of client CPU each (docs/benchmarks.md). Streams and uploads go through the
`AsyncClient`.

A submit carries an `Idempotency-Key` (see `AsyncClient.submit_spec`), so the transport may
send it again on a fresh connection when a reused one closed before the answer: the broker
returns the same job. Any other POST is never sent twice by the transport.
"""

from __future__ import annotations

import json as jsonlib
import urllib.parse
import urllib.request
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from ._transport import Http11Transport
from .errors import BrokerUnreachable, error_for_status
from .settings import ClientSettings

__all__ = ["Requester", "http_client"]

ModelT = TypeVar("ModelT", bound=BaseModel)

_MAX_CONNECTIONS = 100
_URLS_KEPT = 1024  # parsed URLs a client keeps (per-job paths come and go)


def http_client(
    url: str,
    *,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 10.0,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for calls to `url` (a broker, or a worker's backend) on
    garage's transport, or on httpx's own where a proxy applies to `url`.
    `max_connections` is per host."""
    return _client(_transport_for(url, max_connections), timeout_s, connect_timeout_s)


def _transport_for(url: str, max_connections: int) -> Http11Transport | None:
    """garage's transport for `url`; None where a proxy applies (httpx's own speaks to it)."""
    parts = urllib.parse.urlsplit(url)
    proxied = parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
        parts.hostname or ""
    )
    return None if proxied else Http11Transport(max_connections=max_connections)


def _client(
    transport: httpx.AsyncBaseTransport | None, timeout_s: float, connect_timeout_s: float
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
    return httpx.AsyncClient(transport=transport, timeout=timeout)


class Requester:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout_s: float | None = None,
    ) -> None:
        settings = ClientSettings()
        self.url = (url or settings.url).rstrip("/")
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._owns_http = http is None
        self._timeout_s = timeout_s or settings.timeout_s
        self._timeouts = httpx.Timeout(self._timeout_s, connect=10.0).as_dict()
        # garage's own transport, which request/response calls are handed to directly
        self._transport = None if http else _transport_for(self.url, _MAX_CONNECTIONS)
        self.http = http or _client(self._transport, self._timeout_s, 10.0)
        self._urls: dict[str, httpx.URL] = {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The answer, read whole; an error status raises the matching `APIError`, no
        answer at all `BrokerUnreachable`. `content`: a body already encoded as JSON."""
        all_headers = {**self.headers, **(headers or {})}
        if json is not None:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        timeouts = self._timeouts
        if timeout_s is not None:
            timeouts = httpx.Timeout(timeout_s, connect=10.0).as_dict()
        try:
            if self._transport is not None and files is None and data is None:
                request = httpx.Request(
                    method,
                    self._url(path) if not query else self.url + path,
                    params=query or None,
                    headers=all_headers,
                    content=content,
                    extensions={"timeout": timeouts},
                )
                answer = await self._transport.handle_async_request(request)
                await answer.aread()
            else:
                answer = await self.http.request(
                    method,
                    self.url + path,
                    content=content,
                    params=query or None,
                    headers=all_headers,
                    files=files,
                    data=data,
                    timeout=httpx.Timeout(**timeouts),
                )
        except httpx.TransportError as exc:
            raise BrokerUnreachable(f"cannot reach the broker at {self.url}: {_why(exc)}") from exc
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = answer.text
            raise error_for_status(answer.status_code, body, answer.headers.get("retry-after"))
        return answer

    def _url(self, path: str) -> httpx.URL:
        """The URL of `path`, parsed once: httpx's URL parser is a third of a call's CPU."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            url = self._urls[path] = httpx.URL(self.url + path)
        return url

    async def call(
        self,
        method: str,
        path: str,
        reply: type[ModelT],
        *,
        body: BaseModel | None = None,
        exclude_none: bool = False,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ModelT:
        """A call whose body and answer are models: pydantic writes the body's JSON and
        parses the answer's in one pass each, with no dicts in between."""
        content = None
        if body is not None:
            content = body.model_dump_json(exclude_none=exclude_none).encode()
        answer = await self.request(
            method, path, content=content, headers=headers, timeout_s=timeout_s
        )
        return reply.model_validate_json(answer.content)

    async def json(self, method: str, path: str, **options: Any) -> Any:
        """The answer's JSON (None when it has no body); `options` are `request`'s."""
        answer = await self.request(method, path, **options)
        return answer.json() if answer.content else None

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _why(exc: httpx.TransportError) -> str:
    """What went wrong, in words: httpx's messages are often empty (a timeout)."""
    kind = {
        httpx.ConnectTimeout: "connecting timed out",
        httpx.ReadTimeout: "no answer in time",
        httpx.WriteTimeout: "sending timed out",
        httpx.PoolTimeout: "no free connection in time",
        httpx.ConnectError: "connection refused or host unknown",
    }.get(type(exc))
    detail = str(exc).strip()
    if kind and detail:
        return f"{kind} ({detail})"
    return kind or detail or type(exc).__name__
