"""`Http1Pool` against a scripted HTTP/1.1 server on loopback: framing, keep-alive, the
stale-connection retry, answers framed every way, and what a broken exchange leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from garage.client import BrokerUnreachable
from garage.client._http import Requester
from garage.client._http1 import Http1Error, Http1Pool

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

# (connection number, request number on that connection, request head) -> the bytes to
# answer with; ("close", bytes) to answer and then close the connection; None to close it
# without answering; or "hang" to answer nothing
Script = Callable[[int, int, bytes], bytes | tuple[str, bytes] | str | None]


@dataclass
class Seen:
    connection: int
    head: bytes
    body: bytes


@dataclass
class ScriptedServer:
    script: Script
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections = self.connections + 1
        try:
            for index in range(1_000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.seen.append(Seen(number, head, body))
                answer = self.script(number, index, head)
                if answer is None:
                    return
                if answer == "hang":
                    await asyncio.sleep(3600)
                then_close = isinstance(answer, tuple)
                if isinstance(answer, tuple):
                    answer = answer[1]
                assert isinstance(answer, bytes)
                writer.write(answer)
                await writer.drain()
                if then_close or b"connection: close" in answer.lower():
                    return
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[ScriptedServer]]]:
    servers: list[asyncio.Server] = []

    async def started(script: Script) -> ScriptedServer:
        scripted = ScriptedServer(script)
        server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
        servers.append(server)
        scripted.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return scripted

    yield started
    for server in servers:
        server.close()


async def send(pool: Http1Pool, path: str = "/x", **options) -> tuple[int, bytes]:
    options.setdefault("headers", {})
    options.setdefault("body", None)
    options.setdefault("timeout_s", 5.0)
    return await pool.send("GET" if options["body"] is None else "POST", path, **options)


async def test_a_request_is_framed_and_its_connection_reused(serve) -> None:
    server = await serve(lambda c, i, head: OK)
    pool = Http1Pool(server.url + "/base/", limit=4)
    status, body = await pool.send(
        "POST",
        "/v1/jobs/a b?c#d",
        query="limit=5&status=queued",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        body=b'{"model":"m"}',
        timeout_s=5,
    )
    assert (status, body) == (200, b"{}")
    assert await send(pool) == (200, b"{}")
    first, second = server.seen
    lines = first.head.decode().split("\r\n")
    assert lines[0] == "POST /base/v1/jobs/a%20b%3Fc%23d?limit=5&status=queued HTTP/1.1"
    assert f"Host: {server.url.removeprefix('http://')}" in lines
    assert "Authorization: Bearer k" in lines
    assert "Content-Length: 13" in lines
    assert any(line.startswith("User-Agent: garage-client/") for line in lines)
    assert first.body == b'{"model":"m"}'
    assert second.head.startswith(b"GET /base/x HTTP/1.1\r\n")
    assert b"content-length" not in second.head.lower()
    assert (first.connection, second.connection) == (1, 1)
    await pool.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(serve) -> None:
    # Every answer says nothing of closing, and then the server closes (as uvicorn does
    # after 5 s idle).
    server = await serve(lambda connection, index, head: ("close", OK))
    pool = Http1Pool(server.url, limit=4)
    assert await send(pool) == (200, b"{}")
    await asyncio.sleep(0.1)  # the server's FIN comes in
    assert not pool._idle[-1].open
    assert await send(pool) == (200, b"{}")
    assert [s.connection for s in server.seen] == [1, 2]
    await pool.aclose()


async def test_a_request_the_server_drops_on_a_reused_connection_goes_again(serve) -> None:
    # The server closes connection 1 as the second request arrives, without answering it:
    # it read none of it, so the pool sends it once more on a new connection.
    server = await serve(lambda connection, index, head: None if index == 1 else OK)
    pool = Http1Pool(server.url, limit=4)
    assert await send(pool, body=b'{"n":1}') == (200, b"{}")
    assert await send(pool, body=b'{"n":2}') == (200, b"{}")
    assert [(s.connection, s.body) for s in server.seen] == [
        (1, b'{"n":1}'),
        (1, b'{"n":2}'),
        (2, b'{"n":2}'),
    ]
    await pool.aclose()


async def test_a_request_dropped_on_a_new_connection_is_not_sent_twice(serve) -> None:
    server = await serve(lambda connection, index, head: None)
    pool = Http1Pool(server.url, limit=4)
    with pytest.raises(Http1Error, match="closed before an answer"):
        await send(pool, body=b'{"n":1}')
    assert len(server.seen) == 1
    await pool.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello world",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
    ],
    ids=["chunked", "to-the-close", "after-100-continue"],
)
async def test_every_framing_of_an_answer_is_read(serve, answer: bytes) -> None:
    server = await serve(lambda connection, index, head: answer)
    pool = Http1Pool(server.url, limit=4)
    assert await send(pool) == (200, b"hello world")
    assert await send(pool) == (200, b"hello world")
    closes = b"connection: close" in answer
    assert [s.connection for s in server.seen] == ([1, 2] if closes else [1, 1])
    await pool.aclose()


async def test_an_error_status_is_an_answer(serve) -> None:
    server = await serve(
        lambda c, i, h: b'HTTP/1.1 409 Conflict\r\ncontent-length: 14\r\n\r\n{"error":"no"}'
    )
    pool = Http1Pool(server.url, limit=4)
    assert await send(pool) == (409, b'{"error":"no"}')
    await pool.aclose()


async def test_a_malformed_answer_is_an_error_and_its_connection_dropped(serve) -> None:
    server = await serve(lambda c, i, head: b"HTP/1.1 200 OK\r\n\r\n" if c == 1 else OK)
    pool = Http1Pool(server.url, limit=4)
    with pytest.raises(Http1Error, match="malformed"):
        await send(pool)
    assert await send(pool) == (200, b"{}")
    assert [s.connection for s in server.seen] == [1, 2]
    await pool.aclose()


async def test_a_timed_out_exchange_leaves_no_connection_out_of_step(serve) -> None:
    server = await serve(lambda connection, index, head: "hang" if connection == 1 else OK)
    pool = Http1Pool(server.url, limit=4)
    with pytest.raises(TimeoutError):
        await send(pool, timeout_s=0.2)
    assert await send(pool) == (200, b"{}")
    assert [s.connection for s in server.seen] == [1, 2]
    await pool.aclose()


async def test_calls_past_the_limit_wait_for_a_connection_within_their_timeout(serve) -> None:
    server = await serve(lambda connection, index, head: "hang" if connection == 1 else OK)
    pool = Http1Pool(server.url, limit=1)
    holding = asyncio.create_task(send(pool, timeout_s=30))
    await asyncio.sleep(0.1)
    with pytest.raises(TimeoutError):
        await send(pool, timeout_s=0.2)  # never got the one connection
    assert len(server.seen) == 1
    holding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holding
    assert await send(pool) == (200, b"{}")  # the slot is free again, on a new connection
    assert [s.connection for s in server.seen] == [1, 2]
    await pool.aclose()


async def test_no_server_is_an_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = Http1Pool(f"http://127.0.0.1:{port}", limit=4)
    with pytest.raises(Http1Error, match="cannot connect"):
        await send(pool)


async def test_a_header_that_would_split_the_request_is_refused(serve) -> None:
    server = await serve(lambda c, i, head: OK)
    pool = Http1Pool(server.url, limit=4)
    for headers in ({"X-A": "v\r\nX-Injected: 1"}, {"X-A\n": "v"}, {"X-A": "caf\u00e9\u2603"}):
        with pytest.raises(ValueError):
            await send(pool, headers=headers)
    assert server.seen == []


async def test_the_requester_maps_failures_to_broker_unreachable(serve, monkeypatch) -> None:
    monkeypatch.delenv("GARAGE_HTTP_ENGINE", raising=False)
    server = await serve(lambda connection, index, head: None)
    requester = Requester(server.url, "k")
    assert requester.engine == "httptools"
    with pytest.raises(BrokerUnreachable):
        await requester.request("GET", "/v1/jobs")
    await requester.aclose()


def test_a_proxy_for_the_broker_sends_calls_through_aiohttp(monkeypatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "GARAGE_HTTP_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://me:secret@127.0.0.1:3128")
    assert Requester("http://broker.example:8080").engine == "aiohttp"
    monkeypatch.setenv("NO_PROXY", "broker.example")
    assert Requester("http://broker.example:8080").engine == "httptools"
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("GARAGE_HTTP_ENGINE", "httptools")
    with pytest.raises(RuntimeError, match="does not speak to proxies") as refused:
        Requester("http://broker.example:8080")
    assert "secret" not in str(refused.value)
