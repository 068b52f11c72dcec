"""`Http11Transport` under a real `httpx.AsyncClient`, against a scripted HTTP/1.1 server on
loopback and a real uvicorn app: framing, keep-alive, streaming, when a request goes out
again, timeouts, the pool, and what a broken exchange leaves behind."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import uvloop
from httpx_sse import aconnect_sse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from garage.client._transport import Http11Transport

from ..support import free_port, wait_until

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)

Custom = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# What the server does with request `index` (from 0) on connection `connection` (from 1):
# bytes to answer; ("close", bytes) to answer and close; None to close without answering;
# "hang" to answer nothing until the client closes; or a coroutine function that answers.
Action = bytes | tuple[str, bytes] | str | Custom | None
Script = Callable[[int, int, bytes], Action]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def until(predicate: Callable[[], Any], *, timeout_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


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
    closed: int = 0  # connections that have ended, by either side

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            for index in range(10_000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    body = await self._read_body(reader, head.lower())
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.seen.append(Seen(number, head, body))
                action = self.script(number, index, head)
                if action is None:
                    return
                if action == "hang":
                    await reader.read()  # until the client closes
                    return
                if callable(action):
                    await action(reader, writer)
                    continue
                answer = action[1] if isinstance(action, tuple) else action
                assert isinstance(answer, bytes)
                writer.write(answer)
                await writer.drain()
                if isinstance(action, tuple):
                    return
        finally:
            writer.close()
            self.closed += 1

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
        if b"transfer-encoding: chunked" in head:
            body = b""
            while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readexactly(2)
            return body
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return await reader.readexactly(int(line.split(b":", 1)[1]))
        return b""


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[ScriptedServer]]]:
    servers: list[asyncio.Server] = []

    async def started(script: Script, **tls: Any) -> ScriptedServer:
        scripted = ScriptedServer(script)
        server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, **tls)
        servers.append(server)
        scheme = "https" if tls else "http"
        scripted.url = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return scripted

    yield started
    for server in servers:
        server.close()


def client(
    server: ScriptedServer, transport: Http11Transport | None = None, **options: Any
) -> httpx.AsyncClient:
    transport = transport or Http11Transport(**options)
    return httpx.AsyncClient(transport=transport, base_url=server.url)


def connections(transport: Http11Transport) -> list[Any]:
    """The connections `transport` holds open: a look inside, for the few tests that
    watch what the client has noticed."""
    return [connection for pool in transport._pools.values() for connection in pool.open]


async def test_a_request_is_framed_and_its_connection_kept(serve) -> None:
    server = await serve(lambda connection, index, head: OK)
    async with client(server) as http:
        first = await http.post("/v1/jobs?limit=5", json={"model": "m"}, headers={"X-A": "b"})
        second = await http.get("/v1/jobs/a b")
    assert (first.status_code, first.json(), second.json()) == (200, {}, {})
    assert (first.http_version, first.reason_phrase) == ("HTTP/1.1", "OK")
    lines = server.seen[0].head.decode().split("\r\n")
    assert lines[0] == "POST /v1/jobs?limit=5 HTTP/1.1"
    host = server.url.removeprefix("http://")
    assert {f"Host: {host}", "X-A: b", "Content-Length: 13"} <= set(lines)
    assert server.seen[0].body == b'{"model":"m"}'
    assert server.seen[1].head.startswith(b"GET /v1/jobs/a%20b HTTP/1.1\r\n")
    assert [s.connection for s in server.seen] == [1, 1]


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world", True, id="length"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            True,
            id="chunked",
        ),
        pytest.param(
            ("close", b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello world"),
            False,
            id="to-the-close",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
            True,
            id="after-100-continue",
        ),
        # the server keeps these open, but their answers say the connection is done
        pytest.param(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 11\r\n\r\nhello world",
            False,
            id="connection-close",
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\ncontent-length: 11\r\n\r\nhello world", False, id="1.0"),
    ],
)
async def test_every_framing_of_an_answer_is_read(serve, answer: Action, kept: bool) -> None:
    server = await serve(lambda connection, index, head: answer)
    async with client(server) as http:
        for _ in range(2):
            reply = await http.post("/x", content=b"data")
            assert (reply.status_code, reply.content) == (200, b"hello world")
    assert [s.connection for s in server.seen] == ([1, 1] if kept else [1, 2])


async def test_a_request_that_asks_to_close_does_not_keep_its_connection(serve) -> None:
    server = await serve(lambda connection, index, head: OK)  # the server would keep it
    async with client(server) as http:
        await http.get("/x", headers={"Connection": "close"})
        await http.get("/x")
    assert [s.connection for s in server.seen] == [1, 2]


async def test_answers_without_a_body_leave_the_connection_in_step(serve) -> None:
    answers = {
        b"HEAD": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",  # no body follows
        b"GET /204": b"HTTP/1.1 204 No Content\r\n\r\n",
        b"GET /304": b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
        b"GET /x": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    }
    server = await serve(
        lambda c, i, head: next(v for k, v in answers.items() if head.startswith(k))
    )
    async with client(server) as http:
        for method, path, status in [
            ("HEAD", "/h", 200),
            ("GET", "/204", 204),
            ("GET", "/304", 304),
        ]:
            reply = await http.request(method, path)
            assert (reply.status_code, reply.content) == (status, b"")
            assert (await http.get("/x")).content == b"hello"
    assert {s.connection for s in server.seen} == {1}


async def test_server_sent_events_arrive_as_they_are_sent(serve) -> None:
    more = asyncio.Event()

    async def events(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED_HEAD + chunk(b"event: token\ndata: one\n\n"))
        await writer.drain()
        await more.wait()  # the rest only once the client has the first event
        writer.write(chunk(b"data: two\n\n") + chunk(b"data: three\n\n") + b"0\r\n\r\n")

    server = await serve(lambda connection, index, head: events)
    async with client(server) as http, aconnect_sse(http, "GET", "/events") as source:
        stream = source.aiter_sse()
        first = await asyncio.wait_for(anext(stream), 5)
        assert (first.event, first.data) == ("token", "one")
        more.set()
        assert [event.data async for event in stream] == ["two", "three"]


async def test_closing_a_stream_before_its_end_closes_the_connection(serve) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await reader.read()  # until the client closes

    server = await serve(lambda connection, index, head: endless if connection == 1 else OK)
    async with client(server) as http:
        async with http.stream("GET", "/events") as response:
            async for part in response.aiter_raw():
                assert part == b"data: one\n\n"
                break
        await until(lambda: server.closed == 1, what="the server to see the close")
        assert (await http.get("/x")).json() == {}
    assert [s.connection for s in server.seen] == [1, 2]


@pytest.mark.parametrize(
    ("method", "headers", "resent"),
    [
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("POST", {"Idempotency-Key": "job-1"}, True),
        ("GET", {}, True),
        ("PUT", {}, True),
    ],
)
async def test_a_request_dropped_on_a_reused_connection(serve, method, headers, resent) -> None:
    # The server reads the second request on connection 1 and closes without answering:
    # it may have acted on it, so only an idempotent request goes out again.
    server = await serve(lambda connection, index, head: None if index == 1 else OK)
    async with client(server) as http:
        assert (await http.get("/first")).status_code == 200
        if resent:
            reply = await http.request(method, "/second", content=b"payload", headers=headers)
            assert reply.json() == {}
        else:
            with pytest.raises(httpx.RemoteProtocolError, match="not idempotent"):
                await http.request(method, "/second", content=b"payload", headers=headers)
        again = [(s.connection, s.body) for s in server.seen[1:]]
        assert again == ([(1, b"payload"), (2, b"payload")] if resent else [(1, b"payload")])
        assert (await http.get("/third")).json() == {}  # on a new connection
    assert server.seen[-1].connection == 2 + resent


async def test_a_request_dropped_on_a_new_connection_is_not_sent_again(serve) -> None:
    server = await serve(lambda connection, index, head: None)
    async with client(server) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="new connection"):
            await http.get("/x")
    assert len(server.seen) == 1


async def test_a_request_goes_out_again_at_most_once(serve) -> None:
    server = await serve(
        lambda connection, index, head: OK if (connection, index) == (1, 0) else None
    )
    async with client(server) as http:
        await http.get("/first")
        with pytest.raises(httpx.RemoteProtocolError, match="new connection"):
            await http.get("/second")
    assert [(s.connection, s.head.split(b" ")[1]) for s in server.seen] == [
        (1, b"/first"),
        (1, b"/second"),
        (2, b"/second"),
    ]


async def test_an_idle_connection_the_server_closed_is_not_used(serve) -> None:
    # The answer says nothing of closing, then the server closes, as uvicorn does after 5 s.
    server = await serve(lambda connection, index, head: ("close", OK))
    transport = Http11Transport()
    async with client(server, transport) as http:
        await http.post("/x", content=b"1")
        await until(lambda: not connections(transport), what="the client to see the close")
        await http.post("/x", content=b"2")  # a POST: a stale connection would fail it
    assert [(s.connection, s.body) for s in server.seen] == [(1, b"1"), (2, b"2")]


@pytest.mark.parametrize("expiry_s", [0.0, 0.1])
async def test_idle_connections_expire(serve, expiry_s: float) -> None:
    server = await serve(lambda connection, index, head: OK)
    async with client(server, keepalive_expiry_s=expiry_s) as http:
        await http.get("/x")
        answered_at = time.monotonic()
        await until(lambda: time.monotonic() > answered_at + expiry_s, what="the expiry")
        await http.get("/x")
    assert [s.connection for s in server.seen] == [1, 2]


@pytest.mark.parametrize("where", ["head", "body"])
async def test_a_read_timeout_leaves_no_connection_out_of_step(serve, where: str) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
        await reader.read()

    stall = "hang" if where == "head" else half
    server = await serve(lambda connection, index, head: stall if connection == 1 else OK)
    async with client(server) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/x", timeout=httpx.Timeout(5, read=0.2))
        assert (await http.get("/x")).json() == {}
    assert [s.connection for s in server.seen] == [1, 2]


async def test_a_write_timeout_is_raised_when_the_server_reads_nothing() -> None:
    release = asyncio.Event()

    async def head_then_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.close()

    server = await asyncio.start_server(head_then_nothing, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/up"

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536

    async with httpx.AsyncClient(transport=Http11Transport()) as http:
        with pytest.raises(httpx.WriteTimeout):
            await http.post(url, content=endless(), timeout=httpx.Timeout(5, write=0.3))
    release.set()
    server.close()


async def test_calls_past_the_limit_wait_for_a_connection_within_the_pool_timeout(serve) -> None:
    server = await serve(lambda connection, index, head: "hang" if connection == 1 else OK)
    async with client(server, max_connections=1) as http:
        holding = asyncio.create_task(http.get("/hold"))
        await until(lambda: len(server.seen) == 1, what="the first request to arrive")
        with pytest.raises(httpx.PoolTimeout):
            await http.get("/x", timeout=httpx.Timeout(5, pool=0.2))
        assert len(server.seen) == 1
        holding.cancel()  # cancelling the call closes its connection and frees the slot
        with pytest.raises(asyncio.CancelledError):
            await holding
        assert (await http.get("/x")).json() == {}
    assert [s.connection for s in server.seen] == [1, 2]


async def test_no_server_is_a_connect_error() -> None:
    port = free_port()
    async with httpx.AsyncClient(transport=Http11Transport()) as http:
        with pytest.raises(httpx.ConnectError, match="cannot connect"):
            await http.get(f"http://127.0.0.1:{port}/x")


@pytest.mark.parametrize(
    "answer",
    [b"HTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 200"],
    ids=["malformed", "bytes-past-the-answer"],
)
async def test_a_bad_answer_never_leaves_its_connection_in_the_pool(serve, answer: bytes) -> None:
    server = await serve(lambda connection, index, head: answer if connection == 1 else OK)
    async with client(server) as http:
        if answer.startswith(b"HTP"):
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await http.get("/x")
        else:
            assert (await http.get("/x")).content == b"{}"  # the answer itself is whole
        assert (await http.get("/x")).json() == {}
    assert [s.connection for s in server.seen] == [1, 2]


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "v\r\nX-Injected: 1"}, {"X-A": "v\nX-Injected: 1"}, {"X-A": "v\0"}, {"X-A\r\n": "v"}],
)
async def test_a_header_that_would_split_the_request_is_refused(serve, headers) -> None:
    server = await serve(lambda connection, index, head: OK)
    async with client(server) as http:
        with pytest.raises(httpx.LocalProtocolError, match="CR, LF or NUL"):
            await http.get("/x", headers=headers)
    assert server.seen == []


async def test_a_streamed_body_goes_out_chunked(serve) -> None:
    server = await serve(lambda connection, index, head: OK)

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"", b"two,", b"three" * 20_000):
            yield part

    async with client(server) as http:
        assert (await http.post("/up", content=parts())).json() == {}
        assert (await http.post("/up", content=b"after")).json() == {}
    assert b"transfer-encoding: chunked" in server.seen[0].head.lower()
    assert server.seen[0].body == b"one,two," + b"three" * 20_000
    assert [(s.connection, s.body[:5]) for s in server.seen] == [(1, b"one,t"), (1, b"after")]


async def test_many_concurrent_calls_share_the_limited_connections(serve) -> None:
    def echo(connection: int, index: int, head: bytes) -> bytes:
        body = server.seen[-1].body  # the request just read
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    server = await serve(echo)
    async with client(server, max_connections=10) as http:
        replies = await asyncio.gather(*(http.post("/n", content=b"%d" % n) for n in range(50)))
    assert [reply.content for reply in replies] == [b"%d" % n for n in range(50)]
    assert len(server.seen) == 50
    assert 1 < server.connections <= 10


async def test_a_slow_reader_pauses_the_socket_instead_of_buffering(serve) -> None:
    size = 32 * 1024 * 1024
    writers: list[asyncio.StreamWriter] = []

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        writer.write(b"z" * size)  # asyncio keeps what the socket does not take yet
        await writer.drain()

    server = await serve(lambda connection, index, head: huge)
    transport = Http11Transport()
    async with client(server, transport) as http, http.stream("GET", "/big") as response:
        parts = response.aiter_raw()
        received = len(await anext(parts))
        await until(
            lambda: any(not c.transport.is_reading() for c in connections(transport)),
            what="the client to stop reading from its socket",
        )
        # most of the answer is still with the server, not in the client's memory
        assert writers[0].transport.get_write_buffer_size() > size // 2
        async for part in parts:
            received += len(part)
    assert received == size


async def test_aclose_closes_every_connection(serve) -> None:
    server = await serve(lambda connection, index, head: OK)
    http = client(server)
    await asyncio.gather(http.get("/a"), http.get("/b"))
    assert server.connections == 2
    await http.aclose()
    await until(lambda: server.closed == 2, what="the server to see both closes")


# A real uvicorn app: a multipart upload and a keep-alive run


async def upload(request: Request) -> JSONResponse:
    async with request.form() as form:  # closes the spooled file
        file, note = form["file"], form["note"]
        assert not isinstance(file, str)
        digest = hashlib.sha256(await file.read()).hexdigest()
        return JSONResponse({"name": file.filename, "sha256": digest, "note": note})


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": (await request.body()).decode()})


@pytest.fixture(scope="module")
def uvicorn_url() -> Iterator[str]:
    app = Starlette(
        routes=[Route("/upload", upload, methods=["POST"]), Route("/echo", echo, methods=["POST"])]
    )
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout_s=10, what="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


async def test_a_multipart_upload_arrives_intact(uvicorn_url: str) -> None:
    data = bytes(range(256)) * 1200  # 300 KiB: sent as it is read, not in the first write
    async with httpx.AsyncClient(transport=Http11Transport(), base_url=uvicorn_url) as http:
        reply = await http.post("/upload", files={"file": ("w.bin", data)}, data={"note": "hi"})
        again = await http.post("/echo", content=b"after")
    assert reply.json() == {
        "name": "w.bin",
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "hi",
    }
    assert again.json() == {"got": "after"}


def test_it_runs_under_uvloop(uvicorn_url: str) -> None:
    # uvloop's transports are not asyncio's classes: streaming, a request sent again and
    # concurrent calls, all on uvloop.
    def script(connection: int, index: int, head: bytes) -> Action:
        if (connection, index) == (1, 0):
            return CHUNKED_HEAD + chunk(b"data: one\n\n") + chunk(b"data: two\n\n") + b"0\r\n\r\n"
        return None if (connection, index) == (1, 1) else OK

    async def calls() -> tuple[list[str], list[str]]:
        scripted = ScriptedServer(script)
        server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
        scripted.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with client(scripted) as http:
            async with aconnect_sse(http, "GET", "/events") as source:
                events = [event.data async for event in source.aiter_sse()]
            assert (await http.get("/again")).json() == {}
        server.close()
        assert [s.connection for s in scripted.seen] == [1, 1, 2]
        async with httpx.AsyncClient(
            transport=Http11Transport(max_connections=4), base_url=uvicorn_url
        ) as http:
            replies = await asyncio.gather(
                *(http.post("/echo", content=b"%d" % n) for n in range(20))
            )
        return events, [reply.json()["got"] for reply in replies]

    events, echoed = uvloop.run(calls())
    assert events == ["one", "two"]
    assert echoed == [str(n) for n in range(20)]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_with_a_given_ssl_context(serve, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    server = await serve(lambda connection, index, head: OK, ssl=server_side)
    async with client(server, ssl_context=ssl.create_default_context(cafile=str(cert))) as http:
        assert (await http.get("/x")).json() == {}
        assert (await http.get("/x")).json() == {}
    assert [s.connection for s in server.seen] == [1, 1]
    async with client(server) as http:  # the default context does not trust this cert
        with pytest.raises(httpx.ConnectError):
            await http.get("/x")
