"""The one place the client sends HTTP: base URL, bearer key, and error mapping.

Request/response calls (submit, wait, polls, lease reports: everything but event streams
and file uploads) go through `Http1Pool` (`_http1.py`): keep-alive HTTP/1.1 connections
parsed by httptools, about 45 µs of client CPU a call on a 2-core machine, against 230 µs
through aiohttp and twice that through httpx (docs/benchmarks.md). A job's round trip makes
three such calls and a worker one per streamed report. Where a proxy applies to the broker's
URL (`HTTP(S)_PROXY`, `NO_PROXY`) they go through aiohttp, which speaks to proxies. Event
streams keep httpx, so httpx-sse parses them, and so do multipart uploads. A caller that
passes its own `httpx.AsyncClient` (a test's ASGI transport, say) has every call sent
through it.
"""

from __future__ import annotations

import json as jsonlib
import urllib.parse
import urllib.request
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from ._http1 import Http1Error, Http1Pool
from .errors import BrokerUnreachable, error_for_status
from .settings import ClientSettings

__all__ = ["Requester", "new_http_client"]

_MAX_CONNECTIONS = 100

ModelT = TypeVar("ModelT", bound=BaseModel)


def new_http_client(
    settings: ClientSettings, *, timeout_s: float | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s or settings.timeout_s, connect=10.0),
        limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=20),
    )


class _Answer:
    """What a call got back, whichever library sent it."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class Requester:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._settings = settings = ClientSettings()
        self.url = (url or settings.url).rstrip("/")
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout_s = timeout_s or settings.timeout_s
        self._owns_http = http is None
        self._http = http
        # httpx honours HTTP(S)_PROXY and NO_PROXY; so do the others, looked up once:
        # aiohttp's own trust_env does it again on a thread for every request.
        self._proxy = _env_proxy(self.url)
        self.engine = "httpx" if http is not None else _engine(settings.http_engine, self._proxy)
        self._pool: Http1Pool | None = None  # made on the first call
        self._session: Any = None  # the aiohttp session, likewise

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client: event streams, uploads, and every call when it was given."""
        if self._http is None:
            self._http = new_http_client(self._settings, timeout_s=self._timeout_s)
        return self._http

    async def request(self, method: str, path: str, **options: Any) -> Any:
        """The JSON of the answer (None when empty); an error status raises. `options` are
        `_send`'s."""
        answer = await self._send(method, path, **options)
        if answer.status_code == 204 or not answer.content:
            return None
        return answer.json()

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
        answer = await self._send(
            method, path, content=content, headers=headers, timeout_s=timeout_s
        )
        return reply.model_validate_json(answer.content)

    async def request_text(self, method: str, path: str) -> str:
        return (await self._send(method, path)).text

    async def _send(
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
    ) -> _Answer | httpx.Response:
        """`content`: a body already encoded as JSON, sent instead of `json`."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        all_headers = {**self.headers, **(headers or {})}
        if json is not None:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        answer: _Answer | httpx.Response
        if self.engine != "httpx" and files is None and data is None:
            send = self._send_http1 if self.engine == "httptools" else self._send_aiohttp
            answer = await send(
                method, path, content=content, params=query, headers=all_headers,
                timeout_s=timeout_s,
            )  # fmt: skip
        else:
            extra: dict[str, Any] = {}
            if timeout_s is not None:
                extra["timeout"] = httpx.Timeout(timeout_s, connect=10.0)
            try:
                answer = await self.http.request(
                    method,
                    self.url + path,
                    content=content,
                    params=query,
                    headers=all_headers,
                    files=files,
                    data=data,
                    **extra,
                )
            except httpx.TransportError as exc:
                raise BrokerUnreachable(f"{method} {self.url}{path}: {exc!r}") from exc
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = answer.text
            raise error_for_status(answer.status_code, body)
        return answer

    async def _send_http1(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None,
        params: dict[str, Any],
        headers: dict[str, str],
        timeout_s: float | None,
    ) -> _Answer:
        if self._pool is None:
            self._pool = Http1Pool(self.url, limit=_MAX_CONNECTIONS)
        query = urllib.parse.urlencode({k: _query_value(v) for k, v in params.items()})
        try:
            status, body = await self._pool.send(
                method, path, query=query, headers=headers, body=content,
                timeout_s=timeout_s or self._timeout_s,
            )  # fmt: skip
        except (Http1Error, TimeoutError) as exc:
            raise BrokerUnreachable(f"{method} {self.url}{path}: {exc!r}") from exc
        return _Answer(status, body)

    async def _send_aiohttp(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None,
        params: dict[str, Any],
        headers: dict[str, str],
        timeout_s: float | None,
    ) -> _Answer:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=_MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s, connect=10.0),
            )
        options: dict[str, Any] = {}
        if timeout_s is not None:
            options["timeout"] = aiohttp.ClientTimeout(total=timeout_s, connect=10.0)
        try:
            async with self._session.request(
                method,
                self.url + path,
                data=content,
                params={k: _query_value(v) for k, v in params.items()},
                headers=headers,
                proxy=self._proxy,
                **options,
            ) as response:
                return _Answer(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BrokerUnreachable(f"{method} {self.url}{path}: {exc!r}") from exc

    async def aclose(self) -> None:
        if not self._owns_http:
            return
        if self._pool is not None:
            await self._pool.aclose()
        if self._session is not None:
            await self._session.close()
        if self._http is not None:
            await self._http.aclose()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _env_proxy(url: str) -> str | None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)


def _engine(setting: str, proxy: str | None) -> str:
    """What sends request/response calls, for `GARAGE_HTTP_ENGINE=setting`."""
    if setting == "aiohttp" and not _has_aiohttp():
        raise RuntimeError("GARAGE_HTTP_ENGINE=aiohttp, but aiohttp is not installed")
    if setting == "httptools" and proxy is not None:
        where = urllib.parse.urlsplit(proxy).hostname  # not the URL: it may hold a password
        raise RuntimeError(
            f"GARAGE_HTTP_ENGINE=httptools does not speak to proxies, and one applies ({where})"
        )
    if setting != "auto":
        return setting
    if proxy is None:
        return "httptools"
    return "aiohttp" if _has_aiohttp() else "httpx"


def _has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True
