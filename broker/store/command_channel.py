"""One Redis connection that every script call shares, in the order of the calls.

redis-py takes a connection from its pool for each command and hands it back after the
reply: on this path that is about 100 µs of Python per call (`docs/benchmarks.md`), and
two calls made one after the other may run on two connections, in either order. The
channel writes each command to its one connection the moment it is called and matches the
replies to the calls in order, as Redis answers a connection's commands in the order they
came. So:

- a call costs a write and a future, and concurrent calls share the connection's writes;
- scripts run in Redis in the order this process called them: a worker's report that
  arrives after its job's `submit.lua` was sent always finds the job, without waiting for
  the submit's reply (`enqueue` in `broker/api/jobs.py` relies on it).

The connection is made by the pool's own connection class, so the URL, credentials, TLS,
database and the scripts loaded on connect (`connections.py`) are redis-py's; only the
matching of replies to calls is done here. Calls made while it connects are written, in
order, once it is up. A lost connection fails every call still waiting for its reply
with redis-py's ConnectionError: such a script may or may not have run, so it is never
sent again blindly; the next call connects anew.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError, ResponseError

if TYPE_CHECKING:
    from .connections import GarageConnection


__all__ = ["CommandChannel"]


class _Link:
    """One connection and the calls written to it that wait for their replies."""

    __slots__ = ("connection", "reader", "replies")

    def __init__(self, connection: GarageConnection) -> None:
        self.connection = connection
        self.replies: deque[asyncio.Future[Any]] = deque()
        self.reader: asyncio.Task[None] | None = None

    def fail(self, error: Exception) -> None:
        replies, self.replies = self.replies, deque()
        _fail(replies, error)


def _fail(replies: Iterable[asyncio.Future[Any]], error: Exception) -> None:
    for reply in replies:
        if not reply.done():
            reply.set_exception(error)


class CommandChannel:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._packer: GarageConnection = pool.make_connection()  # packs; never connects
        self._link: _Link | None = None
        self._queued: list[tuple[list[bytes], asyncio.Future[Any]]] = []  # while connecting
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False

    def send(self, *args: Any) -> Awaitable[Any]:
        """Writes the command now (or, while connecting, once connected, after every
        earlier call) and returns the awaitable of its reply."""
        if self._closed:
            raise ConnectionError("the command channel is closed")
        packed = self._packer.pack_command(*args)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link = self._link
        if link is None:
            self._queued.append((packed, reply))
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect())
            return reply
        self._write(link, packed, reply)
        return self._drained(link.connection, reply)

    async def aclose(self) -> None:
        self._closed = True
        link, self._link = self._link, None
        for task in (self._connecting, link.reader if link else None):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        closed = ConnectionError("the command channel is closed")
        self._fail_queued(closed)
        if link is not None:
            link.fail(closed)
            await link.connection.disconnect()

    def _write(self, link: _Link, packed: list[bytes], reply: asyncio.Future[Any]) -> None:
        link.replies.append(reply)
        try:
            link.connection.write_now(packed)
        except Exception as exc:  # a transport that broke under the write
            self._drop(link, ConnectionError(f"lost the connection to Redis: {exc}"))
            if link.reader is not None:
                link.reader.cancel()  # which closes the connection

    @staticmethod
    async def _drained(connection: GarageConnection, reply: asyncio.Future[Any]) -> Any:
        with contextlib.suppress(Exception):  # a broken transport fails the reply instead
            await connection.drained()
        return await reply

    async def _connect(self) -> None:
        connection: GarageConnection = self._pool.make_connection()
        try:
            await connection.connect()
        except BaseException as exc:
            self._connecting = None
            self._fail_queued(exc if isinstance(exc, Exception) else ConnectionError(exc))
            if not isinstance(exc, Exception):
                raise
            return
        self._connecting = None
        link = self._link = _Link(connection)
        queued, self._queued = self._queued, []
        for packed, reply in queued:
            self._write(link, packed, reply)
        if self._link is link:
            link.reader = asyncio.create_task(self._read(link))
        else:
            await connection.disconnect(nowait=True)

    async def _read(self, link: _Link) -> None:
        try:
            while True:
                try:
                    value: Any = await link.connection.read_response()
                except ResponseError as exc:  # an error reply: that call's, not the link's
                    value = exc
                if not link.replies:
                    raise ConnectionError("Redis sent a reply no call was waiting for")
                reply = link.replies.popleft()
                if reply.done():  # its caller was cancelled
                    continue
                if isinstance(value, ResponseError):
                    reply.set_exception(value)
                else:
                    reply.set_result(value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drop(link, exc if isinstance(exc, ConnectionError) else ConnectionError(exc))
            with contextlib.suppress(Exception):
                await link.connection.disconnect(nowait=True)

    def _drop(self, link: _Link, error: Exception) -> None:
        if self._link is link:
            self._link = None
        link.fail(error)

    def _fail_queued(self, error: Exception) -> None:
        queued, self._queued = self._queued, []
        _fail((reply for _, reply in queued), error)
