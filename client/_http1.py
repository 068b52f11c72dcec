"""Request/response calls on pooled HTTP/1.1 keep-alive connections, parsed by httptools.

Why not aiohttp, which sends these calls where a proxy is set: on loopback to uvicorn, one
call through aiohttp's `ClientSession` costs about 230 µs of client CPU on a 2-core machine
against about 45 µs here (docs/benchmarks.md), and a job's round trip makes three such
calls. aiohttp's cost is in what a general client needs and these calls do not: cookies,
tracing, redirects, a URL object and a multidict per call. Parsing is left to httptools
(uvicorn's parser); this module only frames a request as one write and keeps connections.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from collections import deque
from typing import cast

import httptools

__all__ = ["Http1Error", "Http1Pool"]

# uvicorn closes a keep-alive connection after 5 s without a request; one idle for longer
# than this is closed here rather than reused.
_IDLE_S = 4.0
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_FORBIDDEN_IN_HEAD = ("\r", "\n", "\0")


class Http1Error(Exception):
    """A request that could not be sent, or an answer that could not be read."""


class _ClosedBeforeAnswer(Http1Error):
    """The server closed the connection before a byte of the answer came."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, carrying one exchange at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self._body: list[bytes] = []
        self._started = False  # a byte of the current answer has come
        self._headers_done = False
        self._framed = False  # the answer has a Content-Length or is chunked
        self._status = 0
        self._keep_alive = False
        self.open = True
        self.idle_since = 0.0

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        """Sends `request`; the future gets (status, body, whether the connection may be
        reused)."""
        assert self._transport is not None and self._answer is None
        self._answer = asyncio.get_running_loop().create_future()
        self._started = self._headers_done = self._framed = False
        self._body = []
        self._transport.write(request)
        return self._answer

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._answer is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._settle(Http1Error(f"malformed HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._answer is None or self._answer.done():
            return
        if self._headers_done and not self._framed:
            self._finish()  # an answer whose body runs to the end of the connection
        elif self._started:
            self._settle(Http1Error(f"the connection closed in the middle of an answer ({exc})"))
        else:
            self._settle(_ClosedBeforeAnswer(f"the connection closed before an answer ({exc})"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers_done = self._framed = False
            self._body = []
            return
        self._finish()

    def _finish(self) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result((self._status, b"".join(self._body), self._keep_alive))

    def _settle(self, exc: Exception) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)


class Http1Pool:
    """Keep-alive connections to one origin, at most `limit` of them at once."""

    def __init__(self, base_url: str, *, limit: int, connect_timeout_s: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        from . import __version__  # here, not at the top: the package imports this module

        host = parts.netloc.rpartition("@")[2]
        self._head_start = f"Host: {host}\r\nUser-Agent: garage-client/{__version__}\r\n"
        self._connect_timeout_s = connect_timeout_s
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(limit)
        self._closed = False

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: dict[str, str],
        body: bytes | None,
        timeout_s: float,
    ) -> tuple[int, bytes]:
        """One exchange: (status, body). Raises Http1Error, or TimeoutError after
        `timeout_s` (connecting included)."""
        request = self._frame(method, path, query, headers, body)
        async with asyncio.timeout(timeout_s), self._slots:  # a wait for a slot counts
            while True:
                connection, reused = await self._connection()
                try:
                    status, content, keep_alive = await connection.exchange(request)
                except _ClosedBeforeAnswer:
                    # The server closed an idle connection as the request went out: it read
                    # none of it, so it goes again on another connection.
                    if reused:
                        continue
                    raise
                except BaseException:
                    connection.close()  # an exchange cut short leaves it out of step
                    raise
                if keep_alive and not self._closed:
                    self._keep(connection)
                else:
                    connection.close()
                return status, content

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _keep(self, connection: _Connection) -> None:
        now = connection.idle_since = time.monotonic()
        self._idle.append(connection)
        # Connections are taken from the right, so the left holds the longest idle.
        while self._idle and (not self._idle[0].open or now - self._idle[0].idle_since > _IDLE_S):
            self._idle.popleft().close()

    def _frame(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes | None
    ) -> bytes:
        target = self._prefix + urllib.parse.quote(path, safe=_PATH_SAFE)
        if query:
            target += "?" + query
        head = [f"{method} {target} HTTP/1.1\r\n", self._head_start]
        for name, value in headers.items():
            if any(c in name or c in value for c in _FORBIDDEN_IN_HEAD) or ":" in name:
                raise ValueError(f"header {name!r} holds a line break, NUL or colon")
            head.append(f"{name}: {value}\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        head.append("\r\n")
        try:
            encoded = "".join(head).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ValueError(f"a header holds a character HTTP cannot carry: {exc}") from None
        return encoded + body if body else encoded

    async def _connection(self) -> tuple[_Connection, bool]:
        """An idle connection (the most recently used first) or a new one; and whether it
        was reused."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.open and now - connection.idle_since < _IDLE_S:
                return connection, True
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except OSError as exc:
            raise Http1Error(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        return connection, False
