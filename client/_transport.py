"""HTTP/1.1 for httpx on pooled keep-alive connections, with answers parsed by httptools.

`Http11Transport` is an `httpx.AsyncBaseTransport`: the client, the worker and the worker's
calls to a backend keep httpx's `AsyncClient` (URLs, auth, headers, timeouts, decoding) and
swap only the layer under it. On a 2-core machine one POST through httpx's default transport
costs about 1,500 µs of client CPU (httpcore, h11 and anyio), against about 100 µs for a
connection parsed by httptools (uvicorn's parser); the `AsyncClient` above costs about 240 µs
either way.

This module owns the connections: framing a request (head and a small body in one write),
reading the answer as it comes (streamed, with flow control), keeping connections per origin,
and when a request may go out again. httpx owns everything above, and its exception tree is
what this module raises. No proxies, no HTTP/2, no upgrades.

Sending again: when a reused connection turns out closed before a byte of the answer came,
the server may still have read the request. It goes out once more, on a new connection, only
if it is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, or it carries an Idempotency-Key) and
its body is in memory; otherwise the caller gets `httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TypeVar, cast

import httptools
import httpx

__all__ = ["Http11Transport"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_Head = tuple[int, bytes, list[tuple[bytes, bytes]], bytes]  # status, reason, headers, version

_HIGH_WATER = 256 * 1024  # bytes of an unread answer at which reading from the socket pauses
_ONE_WRITE = 64 * 1024  # a body up to this size goes out in the same write as the head
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_SPECIAL = frozenset({b"transfer-encoding", b"connection", b"content-length", b"idempotency-key"})


class _ClosedBeforeAnswer(httpx.RemoteProtocolError):
    """The connection closed before a byte of the answer came."""


class _OutOfStep(Exception):
    """Bytes came that answer no request: the connection can no longer be trusted."""


class _Framed:
    """A request as it goes on the wire, built once however often it is sent."""

    def __init__(self, request: httpx.Request) -> None:
        method, raw = request.method, request.headers.raw
        lines = [b"%s %s HTTP/1.1" % (method.encode(), request.url.raw_path)]
        lines += [b"%s: %s" % field for field in raw]
        joined = b"".join(lines)
        if b"\r" in joined or b"\n" in joined or b"\0" in joined:
            raise httpx.LocalProtocolError(
                "the request line or a header holds CR, LF or NUL", request=request
            )
        self.head = b"\r\n".join(lines) + b"\r\n\r\n"
        # one pass for the few headers that change how a request is sent
        special = {name.lower(): value.lower() for name, value in raw if name.lower() in _SPECIAL}
        self.chunked = b"chunked" in special.get(b"transfer-encoding", b"")
        self.close_after = b"close" in special.get(b"connection", b"")
        self.head_only = method == "HEAD"
        length = special.get(b"content-length", b"")
        self.length = int(length) if length.isdigit() else None
        self.body: bytes | None
        try:
            self.body = request.content
        except httpx.RequestNotRead:
            self.body = None  # an async stream, sent as it is read
        if self.body is not None and self.chunked:
            self.body = b"%x\r\n%s\r\n" % (len(self.body), self.body) if self.body else b""
            self.body += b"0\r\n\r\n"
        self.replayable = self.body is not None and (
            method in _IDEMPOTENT or b"idempotency-key" in special
        )


async def _wait(future: asyncio.Future[_T], timeout_s: float | None) -> _T:
    """`await future`, raising TimeoutError after `timeout_s` (None: no limit)."""
    if timeout_s is None or future.done():
        return await future
    timer = asyncio.get_running_loop().call_later(timeout_s, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[_T]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one exchange at a time; `exchange` is None
    between answers, when any byte that comes puts the connection out of step."""

    def __init__(self, open_set: set[_Connection]) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport  # set by connection_made
        self.exchange: _Exchange | None = None
        self.open = True
        self.idle_since = 0.0
        self.reading_paused = False
        self.drained: asyncio.Future[None] | None = None  # set while writing is paused
        self._open_set = open_set
        self._answered = False  # a byte of the current answer has come
        self._head_done = False
        self._interim = False
        self._keep_alive = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []

    def start(self, exchange: _Exchange) -> None:
        self.exchange = exchange
        self._answered = self._head_done = False

    def close(self) -> None:
        self.open = False
        self.transport.close()

    def reusable(self) -> bool:
        return self.open and not self.transport.is_closing()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    async def drain(self, timeout_s: float | None, request: httpx.Request) -> None:
        while self.drained is not None and self.open:
            try:
                await _wait(self.drained, timeout_s)
            except TimeoutError:
                raise httpx.WriteTimeout("the request stalled", request=request) from None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._open_set.add(self)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.close()
            return
        self._answered = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.close()
            if self.exchange is not None:  # the answer is not whole: it is malformed
                self.exchange = None
                exchange.fail(
                    httpx.RemoteProtocolError(
                        f"malformed HTTP answer: {exc}", request=exchange.request
                    )
                )
            return
        if (
            self.exchange is not None
            and exchange.buffered > _HIGH_WATER
            and not self.reading_paused
        ):
            self.reading_paused = True  # a slow reader: let TCP push back on the server
            self.transport.pause_reading()

    def eof_received(self) -> None:
        self.open = False  # returning None lets the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._open_set.discard(self)
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        framed = any(
            n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self._headers
        )
        if self._head_done and not framed:
            self._finish(exchange, reusable=False)  # a body that runs to the close
        elif self._answered:
            why = f"the connection closed in the middle of the answer ({exc})"
            exchange.fail(httpx.RemoteProtocolError(why, request=exchange.request))
        else:
            why = f"the connection closed before an answer ({exc})"
            exchange.fail(_ClosedBeforeAnswer(why, request=exchange.request))

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.exchange is None:
            raise _OutOfStep  # a second answer to one request
        self._reason = b""
        self._headers = []

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        assert exchange is not None
        self._interim = 100 <= status < 200 and status != 101  # 100 Continue: more to come
        if self._interim:
            return
        self._head_done = True
        self._keep_alive = self.parser.should_keep_alive()
        version = b"HTTP/" + self.parser.get_http_version().encode()
        if not exchange.head.done():
            exchange.head.set_result((status, self._reason, self._headers, version))
        if exchange.framed.head_only:
            # httptools cannot be told that an answer to HEAD has no body: this parser
            # would wait for one, so the next answer gets a new parser.
            self.parser = httptools.HttpResponseParser(self)
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            raise _OutOfStep  # a body after an answer to HEAD
        exchange.chunks.append(body)
        exchange.buffered += len(body)
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if self._interim or exchange is None:
            return
        self.exchange = None
        reusable = self._keep_alive and exchange.sent and not exchange.framed.close_after
        self._finish(exchange, reusable=reusable)

    def _finish(self, exchange: _Exchange, *, reusable: bool) -> None:
        self.resume_reading()
        exchange.complete = True
        exchange.wake()
        exchange.end(reusable=reusable)


class _Pool:
    """The connections to one origin; a slot of `slots` is held by each exchange."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, size: int, expiry_s: float
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.slots = asyncio.Semaphore(size)
        self.idle: deque[_Connection] = deque()  # the most recently used on the right
        self.open: set[_Connection] = set()
        self.expiry_s = expiry_s
        self.closed = False

    async def acquire(self, timeout_s: float | None, request: httpx.Request) -> None:
        if not self.slots.locked():
            await self.slots.acquire()  # returns at once
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free in time", request=request) from None

    async def connect(self, timeout_s: float | None, request: httpx.Request) -> _Connection:
        loop, where = asyncio.get_running_loop(), f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.open),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"no connection to {where} in time", request=request
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {where}: {exc}", request=request) from exc
        return connection

    def take(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable() and now - connection.idle_since < self.expiry_s:
                return connection
            connection.close()
        return None

    def put(self, connection: _Connection | None, *, reusable: bool) -> None:
        """Gives back a slot, and `connection` to the idle ones or closed."""
        if connection is not None:
            if reusable and not self.closed and connection.reusable():
                now = connection.idle_since = time.monotonic()
                self.idle.append(connection)
                while self.idle and now - self.idle[0].idle_since >= self.expiry_s:
                    self.idle.popleft().close()
            else:
                connection.close()
        self.slots.release()

    def close(self) -> None:
        self.closed = True
        self.idle.clear()
        for connection in list(self.open):
            connection.close()


class _Exchange(httpx.AsyncByteStream):
    """One request and its answer on one connection, and the answer's body as it comes.
    It holds a slot of the pool until `end`: the whole answer, a failure, or a close."""

    def __init__(
        self,
        pool: _Pool,
        connection: _Connection,
        framed: _Framed,
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> None:
        self.pool, self.connection, self.framed, self.request = pool, connection, framed, request
        self.timeouts = timeouts
        self.head: asyncio.Future[_Head] = asyncio.get_running_loop().create_future()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.error: httpx.TransportError | None = None
        self.sent = False  # the whole request went out
        self.complete = False  # the whole answer came
        self.ended = False

    async def send(self) -> _Head:
        framed, connection = self.framed, self.connection
        connection.start(self)
        write = connection.transport.write
        if framed.body is None:
            write(framed.head)
            await self._send_stream()
        elif len(framed.body) <= _ONE_WRITE:
            write(framed.head + framed.body)
        else:
            write(framed.head)
            write(framed.body)
        self.sent = connection.open
        await connection.drain(self.timeouts.get("write"), self.request)
        try:
            return await _wait(self.head, self.timeouts.get("read"))
        except TimeoutError:
            raise httpx.ReadTimeout("no answer in time", request=self.request) from None

    async def _send_stream(self) -> None:
        stream, transport, length = (
            self.request.stream,
            self.connection.transport,
            self.framed.length,
        )
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("Http11Transport sends only async request bodies")
        count = 0
        async for chunk in stream:
            if transport.is_closing():
                return  # an early answer or a close: the head tells which
            count += len(chunk)
            if self.framed.chunked:
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b"")
            elif length is None or count <= length:
                transport.write(chunk)
            else:
                raise httpx.LocalProtocolError("body past Content-Length", request=self.request)
            await self.connection.drain(self.timeouts.get("write"), self.request)
        if self.framed.chunked and not transport.is_closing():
            transport.write(b"0\r\n\r\n")
        elif not self.framed.chunked and length is not None and count != length:
            raise httpx.LocalProtocolError("body short of Content-Length", request=self.request)

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def fail(self, error: httpx.TransportError) -> None:
        if not self.head.done():
            self.head.set_exception(error)
        else:
            self.error = error
            self.wake()

    def end(self, *, reusable: bool) -> None:
        if not self.ended:
            self.ended = True
            self.pool.put(self.connection, reusable=reusable)

    def abandon(self) -> None:
        """Cut short: the connection is out of step, closed and never reused."""
        if not self.ended:
            self.connection.exchange = None
            self.head.cancel()
            if not self.head.cancelled():
                self.head.exception()  # a failure nobody will await: seen, not logged
            self.error = self.error or httpx.ReadError("answer cut short", request=self.request)
            self.end(reusable=False)

    # httpx.AsyncByteStream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while not self.chunks:
            if self.complete:
                raise StopAsyncIteration
            if self.error is not None:
                self.abandon()
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await _wait(self.waiter, self.timeouts.get("read"))
            except TimeoutError:
                self.abandon()
                raise httpx.ReadTimeout("the answer stalled", request=self.request) from None
            except BaseException:
                self.abandon()
                raise
            finally:
                self.waiter = None
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if not self.complete:
            self.connection.resume_reading()
        return data

    async def aclose(self) -> None:
        self.abandon()


class Http11Transport(httpx.AsyncBaseTransport):
    """httpx's transport for HTTP/1.1 over pooled keep-alive connections.

    `max_connections` is per origin; an idle connection older than `keepalive_expiry_s`
    is closed rather than reused (uvicorn closes them after 5 s idle)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100,
        keepalive_expiry_s: float = 4.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry_s = keepalive_expiry_s
        self._pools: dict[tuple[str, str, int], _Pool] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"cannot send {url.scheme!r} URLs", request=request)
        framed = _Framed(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        pool = self._pools.get(origin) or self._pool(origin)
        await pool.acquire(timeouts.get("pool"), request)
        fresh_only = False
        while True:
            try:
                connection = None if fresh_only else pool.take()
                reused = connection is not None
                if connection is None:
                    connection = await pool.connect(timeouts.get("connect"), request)
            except BaseException:
                pool.put(None, reusable=False)
                raise
            exchange = _Exchange(pool, connection, framed, request, timeouts)
            try:
                status, reason, headers, version = await exchange.send()
                break
            except _ClosedBeforeAnswer as exc:
                exchange.ended = True  # the slot stays with this call
                connection.close()
                if reused and framed.replayable:
                    logger.debug("request.resent", extra={"method": request.method})
                    fresh_only = True
                    continue
                pool.put(None, reusable=False)
                why = "it is not idempotent" if framed.body is not None else "its body is a stream"
                why = why if reused else "it went out on a new connection"
                error_type = httpx.RemoteProtocolError if exchange.sent else httpx.WriteError
                raise error_type(f"{exc}; not sent again because {why}", request=request) from None
            except BaseException:
                exchange.abandon()
                raise
        return httpx.Response(
            status,
            headers=headers,
            stream=exchange,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    def _pool(self, origin: tuple[str, str, int]) -> _Pool:
        scheme, host, port = origin
        if scheme == "https" and self._ssl_context is None:
            make = getattr(httpx, "create_ssl_context", ssl.create_default_context)
            self._ssl_context = make()
        tls = self._ssl_context if scheme == "https" else None
        pool = _Pool(host, port, tls, self._max_connections, self._keepalive_expiry_s)
        self._pools[origin] = pool
        return pool
