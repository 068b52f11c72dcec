"""One Redis connection for the broker's script calls, written in call order and read by
hiredis.

Every state change is one Lua script, and most requests make one or two: redis-py's pool
takes a connection, packs the command in Python, reads the reply and gives the connection
back, about 200 µs of CPU per call on a 2-core machine, against about 30 µs here
(docs/benchmarks.md). This module does only what those calls need, through hiredis's
public `pack_command` and `Reader`:

- `call` writes the command the moment it is called, before it yields, and the replies
  are matched to the calls in order (Redis answers a connection's commands in the order
  they came). So concurrent calls share the connection, and scripts run in Redis in the
  order this process called them: a report written after a job's `submit.lua` always
  finds the job (`JobService.submit` relies on it).
- Every script the channel knows (`register`) is loaded on each new connection before
  any call is written to it, so a restarted Redis has them all before the first call and
  the calls still run in order. A reply NOSCRIPT (a Redis flushed under a live
  connection) means the script did not run: it is loaded and called again, which may put
  it after calls made later. Nothing else is ever sent twice: when the connection is
  lost, every call waiting for a reply fails with `ConnectionError` (its script may or may
  not have run) and the next call connects anew.
- The URL is read by redis-py's `parse_url`, so `redis://`, `rediss://` (TLS) and
  `unix://` URLs with a password, user and database mean what they mean to redis-py.
  Behind Sentinel a resolver gives the primary's URL before each connect, and a READONLY
  reply (the server was demoted in a failover; the script did not run) drops the
  connection so the next call finds the new primary.

Reads, pipelines and pub/sub stay on redis-py's pool.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

__all__ = ["ScriptChannel"]

_CALL_TIMEOUT_S = 30.0  # a reply later than this means the connection is stuck


class _Link(asyncio.Protocol):
    """One connection and the calls written to it that wait for their replies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: deque[asyncio.Future[Any]] = deque()
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = False
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")

    def write(self, packed: bytes, reply: asyncio.Future[Any] | None = None) -> asyncio.Future[Any]:
        reply = reply or asyncio.get_running_loop().create_future()
        self.replies.append(reply)
        cast(asyncio.Transport, self.transport).write(packed)
        return reply

    def close(self, error: Exception) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        replies, self.replies = self.replies, deque()
        for reply in replies:
            if not reply.done():
                reply.set_exception(error)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (value := self._reader.gets()) is not False:
            if not self.replies:
                self.close(ConnectionError("Redis sent a reply no call was waiting for"))
                return
            reply = self.replies.popleft()
            if reply.done():  # its caller gave up
                continue
            if isinstance(value, hiredis.ReplyError):
                message = str(value)
                if message.startswith("READONLY"):
                    # A failover made this server a replica: nothing was written. The next
                    # call connects anew, to the primary the resolver names then.
                    reply.set_exception(ConnectionError(f"Redis is a replica now: {message}"))
                    self.close(ConnectionError("Redis became a replica (a failover)"))
                    return
                kind = NoScriptError if message.startswith("NOSCRIPT") else ResponseError
                reply.set_exception(kind(message))
            else:
                reply.set_result(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(ConnectionError(f"lost the connection to Redis: {exc or 'closed'}"))
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class ScriptChannel:
    def __init__(self, url: str, *, resolve: Callable[[], Awaitable[str]] | None = None) -> None:
        """The channel to the Redis at `url`; with `resolve`, to the URL it gives before
        each connect (the current primary behind Sentinel)."""
        self._options = parse_url(url)
        self._tls_wanted = url.startswith("rediss:")
        self._resolve = resolve
        self._link: _Link | None = None
        self._queued: list[tuple[bytes, asyncio.Future[Any]]] = []  # while connecting
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._sources: dict[str, str] = {}  # sha -> script, loaded on each new connection

    def register(self, sha: str, source: str) -> None:
        """A script calls will name: it is loaded on each new connection first."""
        self._sources[sha] = source

    def call(self, sha: str, source: str, args: list[Any]) -> Awaitable[Any]:
        """EVALSHA of the script `sha` (its text `source`) with `args` as ARGV: written
        now (or, while connecting, once connected, after every earlier call); await the
        result for the script's reply."""
        packed = hiredis.pack_command(("EVALSHA", sha, 0, *args))
        return self._reply(self._write(packed), packed, source)

    async def _reply(self, sent: asyncio.Future[Any], packed: bytes, source: str) -> Any:
        try:
            return await self._wait(sent)
        except NoScriptError:  # it did not run: load it, then call it once more
            await self._wait(self._write(hiredis.pack_command(("SCRIPT", "LOAD", source))))
            return await self._wait(self._write(packed))

    def _write(self, packed: bytes) -> asyncio.Future[Any]:
        if self._closed:
            raise ConnectionError("the script channel is closed")
        link = self._link
        if link is not None and not link.lost:
            return link.write(packed)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((packed, reply))
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        return reply

    async def _wait(self, reply: asyncio.Future[Any]) -> Any:
        link = self._link
        if link is not None and not link.writable.is_set():
            await link.writable.wait()  # Redis reads slower than calls come: let it catch up
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                return await reply
        except TimeoutError:
            if link is not None:
                link.close(ConnectionError("Redis did not answer in time"))
            raise ConnectionError("Redis did not answer a script call in time") from None

    async def _connect(self) -> None:
        try:
            link = await self._open()
        except BaseException as exc:
            queued, self._queued = self._queued, []
            error = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc))
            for _, reply in queued:
                if not reply.done():
                    reply.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._connecting = None
        self._link = link
        queued, self._queued = self._queued, []
        for packed, reply in queued:
            link.write(packed, reply)

    async def _open(self) -> _Link:
        options, loop = self._options, asyncio.get_running_loop()
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                if self._resolve is not None:
                    options = parse_url(await self._resolve())
                if "path" in options:
                    _, link = await loop.create_unix_connection(_Link, options["path"])
                else:
                    _, link = await loop.create_connection(
                        _Link,
                        options.get("host", "localhost"),
                        options.get("port", 6379),
                        ssl=self._tls() if self._tls_wanted else None,
                    )
                password, user = options.get("password"), options.get("username")
                if password is not None:
                    auth = ("AUTH", user, password) if user else ("AUTH", password)
                    await link.write(hiredis.pack_command(auth))
                if options.get("db"):
                    await link.write(hiredis.pack_command(("SELECT", options["db"])))
                loads = [
                    link.write(hiredis.pack_command(("SCRIPT", "LOAD", source)))
                    for source in self._sources.values()
                ]
                await asyncio.gather(*loads)
        except (OSError, TimeoutError, ResponseError) as exc:
            raise ConnectionError(f"cannot open the script connection to Redis: {exc}") from exc
        return link

    def _tls(self) -> ssl.SSLContext:
        options = self._options
        context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
        if options.get("ssl_certfile"):
            context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
        if options.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        closed = ConnectionError("the script channel is closed")
        for _, reply in self._queued:
            if not reply.done():
                reply.set_exception(closed)
        self._queued = []
        if self._link is not None:
            self._link.close(closed)
            self._link = None
