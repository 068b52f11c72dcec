"""Slow clients: a request must arrive in good time; the answer may take as long as it needs.

uvicorn times out only an idle keep-alive connection, so a client that sends half a head or
half a body holds its connection (and its file descriptor) for ever. Two pieces close them:

- `head_timeout_protocol`: uvicorn's httptools protocol with a deadline on each request
  head, from the connection's start or the first byte of a later request, to the end of
  its headers. The app is not called before a head is whole, so this has to sit in the
  server: the class is handed to uvicorn as `Config(http=...)`, and it overrides only
  asyncio's `Protocol` methods and httptools' parser callbacks, with its own state.
- `BodyTimeout`: ASGI middleware. While the app reads a body, each part must come within
  `timeout_s` of the last (nginx's `client_body_timeout`); if not, the client gets a 408
  and the app a disconnect. A body the app never reads (its request refused early) and
  that stops coming is closed by uvicorn's keep-alive timeout once the answer is out.

Neither touches what happens after a request is in: long-polls and event streams are
answered for as long as they last. Neither sets a floor on speed: a body that keeps
trickling in, a byte at a time within the timeout, is read to its end (or its size limit).
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from garage.contract import ErrorCode

from .errors import error_response

__all__ = ["BodyTimeout", "head_timeout_protocol"]

_TIMEOUT_TYPE = "invalid_request_error"
_HEAD_LATE = "the request's head did not arrive in time"
_BODY_LATE = "the request body stopped arriving"


def _raw_408(message: str) -> bytes:
    """A whole 408 answer as bytes, written by the protocol: no app ever saw the request."""
    error = {"message": message, "type": _TIMEOUT_TYPE, "param": None}
    body = json.dumps({"error": error | {"code": ErrorCode.request_timeout.value}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class _HeadTimeoutProtocol(HttpToolsProtocol):
    """Closes a connection whose request head is not whole `timeout_s` after it began.

    A head is due from the connection's start, and again once a request is all in; its
    clock starts then, or at the first byte that comes while one is due (a silent
    connection between requests is uvicorn's keep-alive timeout's to close)."""

    timeout_s: ClassVar[float]
    _late = _raw_408(_HEAD_LATE)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.__transport = transport
        self.__timer: asyncio.TimerHandle | None = None
        self.__due = True  # a request head is due
        self.__begun = False  # and some of it came
        super().connection_made(transport)
        self.__arm()

    def data_received(self, data: bytes) -> None:
        self.__arm()  # before parsing: a whole head in these bytes disarms it again
        super().data_received(data)

    def on_message_begin(self) -> None:
        self.__begun = True
        self.__arm()  # a pipelined request, after one that ended in the same bytes
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.__due = self.__begun = False
        self.__disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.__due = True  # the next one, timed from its first byte

    def connection_lost(self, exc: Exception | None) -> None:
        self.__disarm()
        super().connection_lost(exc)

    def __arm(self) -> None:
        if self.__due and self.__timer is None:
            loop = asyncio.get_running_loop()
            self.__timer = loop.call_later(self.timeout_s, self.__time_out)

    def __disarm(self) -> None:
        if self.__timer is not None:
            self.__timer.cancel()
            self.__timer = None

    def __time_out(self) -> None:
        self.__timer = None
        transport = self.__transport
        if transport.is_closing():
            return
        if self.__begun:
            transport.write(self._late)
        transport.close()


def head_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (`Config(http=...)`) with a `timeout_s` deadline on heads."""
    return type("HeadTimeoutProtocol", (_HeadTimeoutProtocol,), {"timeout_s": timeout_s})


class BodyTimeout:
    """ASGI middleware: a request body must keep coming while the app reads it."""

    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body = _Body(scope, receive, send, self.timeout_s)
        await self.app(scope, body.receive, body.send)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-length":
            return value != b"0"
        if name == b"transfer-encoding":
            return True
    return False


class _Body:
    """One request's channels: `receive` times each part of the body; `send` notes whether
    the app has started its answer, and drops what it sends after the 408."""

    __slots__ = ("_receive", "_scope", "_send", "complete", "started", "timed_out", "timeout_s")

    def __init__(self, scope: Scope, receive: Receive, send: Send, timeout_s: float) -> None:
        self._scope, self._receive, self._send = scope, receive, send
        self.timeout_s = timeout_s
        self.complete = self.started = self.timed_out = False

    async def receive(self) -> Message:
        if self.timed_out:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self._receive()
        try:
            async with asyncio.timeout(self.timeout_s):
                message = await self._receive()
        except TimeoutError:
            await self._time_out()
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out and not self.started:
            return  # the 408 was the answer
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _time_out(self) -> None:
        self.timed_out = True
        if not self.started:
            headers = {"Connection": "close"}
            late = error_response(408, _BODY_LATE, _TIMEOUT_TYPE, ErrorCode.request_timeout,
                                  headers=headers)  # fmt: skip
            await late(self._scope, self._receive, self._send)
