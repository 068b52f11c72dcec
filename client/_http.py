"""The one place the client sends HTTP: base URL, bearer key, and error mapping."""

from __future__ import annotations

from typing import Any

import httpx

from .errors import BrokerUnreachable, error_for_status
from .settings import ClientSettings

__all__ = ["Requester", "new_http_client"]


def new_http_client(
    settings: ClientSettings, *, timeout_s: float | None = None
) -> httpx.AsyncClient:
    """An httpx client, sending through aiohttp where that is installed and allowed.

    httpx's own async transport costs about twice as much per request as aiohttp's on the
    same loop; for a worker that reports every few tokens this is most of its CPU time.
    """
    options: dict[str, Any] = {
        "timeout": httpx.Timeout(timeout_s or settings.timeout_s, connect=10.0),
        "limits": httpx.Limits(max_connections=100, max_keepalive_connections=20),
    }
    if settings.http_engine != "httpx":
        try:
            from httpx_aiohttp import HttpxAiohttpClient
        except ImportError:
            if settings.http_engine == "aiohttp":
                raise
        else:
            return HttpxAiohttpClient(**options)
    return httpx.AsyncClient(**options)


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
        self.http = http or new_http_client(settings, timeout_s=timeout_s)

    async def request(self, method: str, path: str, **options: Any) -> Any:
        """The JSON of the answer (None when empty); an error status raises. `options` are
        `_send`'s."""
        response = await self._send(method, path, **options)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def request_text(self, method: str, path: str) -> str:
        return (await self._send(method, path)).text

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        extra: dict[str, Any] = {}
        if timeout_s is not None:
            extra["timeout"] = httpx.Timeout(timeout_s, connect=10.0)
        try:
            response = await self.http.request(
                method,
                self.url + path,
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers={**self.headers, **(headers or {})},
                files=files,
                data=data,
                **extra,
            )
        except httpx.TransportError as exc:
            raise BrokerUnreachable(f"{method} {self.url}{path}: {exc!r}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise error_for_status(response.status_code, body)
        return response

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()
