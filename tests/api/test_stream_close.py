"""A client that leaves a stream mid-job is no error of the broker's: nothing at WARNING or
above is logged, by the broker or by uvicorn (whose loggers do not reach caplog)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import Network

PROMPT = " ".join(["word"] * 100)  # a reply of ~100 tokens, paced by the fake


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def complaints() -> Iterator[list[logging.LogRecord]]:
    """What the broker's process logs at WARNING or above during the test."""
    handler = _Records()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


async def open_stream(network: Network, request: bytes) -> asyncio.StreamWriter:
    """A raw connection that sent `request` and has read its stream up to the first token."""
    host, port = network.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    seen = b""
    while b"delta" not in seen and b'"content"' not in seen:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, f"the stream ended before a token: {seen!r}"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200 "), seen
    return writer


def leave(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    if reset:  # SO_LINGER 0: the kernel sends RST instead of FIN
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def head(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: garage", f"Authorization: Bearer {key}"]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return "\r\n".join([*lines, "", ""]).encode() + body


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_leaving_a_job_event_stream_logs_nothing(
    network: Network, complaints: list[logging.LogRecord], reset: bool
) -> None:
    network.backend.reset(tokens_per_s=50)
    job = {"model": "m", "request": {"messages": [{"role": "user", "content": PROMPT}]}}
    async with httpx.AsyncClient(base_url=network.url) as http:
        reply = await http.post("/v1/jobs", json=job, headers=bearer(network.user_key))
    events = head("GET", f"/v1/jobs/{reply.json()['id']}/events", network.user_key)
    writer = await open_stream(network, events)
    leave(writer, reset=reset)
    await asyncio.sleep(1)  # the job runs on, its events find no reader
    assert [r.getMessage() for r in complaints] == []


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_leaving_a_streamed_chat_completion_logs_nothing(
    network: Network, complaints: list[logging.LogRecord], reset: bool
) -> None:
    network.backend.reset(tokens_per_s=50)
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    request = head("POST", "/v1/chat/completions", network.user_key, json.dumps(body).encode())
    writer = await open_stream(network, request)
    leave(writer, reset=reset)
    await asyncio.sleep(1)  # the broker cancels the job: the client went away
    assert [r.getMessage() for r in complaints] == []
