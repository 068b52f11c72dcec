"""Slow clients against `garage broker run`: a request that stops arriving is closed, while
a long-poll or an event stream that lasts longer than the timeouts is answered in full.

Raw sockets on loopback. The broker runs with a 1 s head timeout and a 2 s body timeout;
each closing is only required to happen within those plus generous slack."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from httpx_sse import aconnect_sse

from .conftest import ADMIN_KEY, Proc, make_key

HEAD_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
SLACK_S = 10.0  # a loaded machine may be slow to close; a broker that never does is caught
CHAT = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "hi"}]},
    "wait_for_worker": True,
}


@pytest.fixture
def broker(start_broker: Callable[..., Proc], monkeypatch: pytest.MonkeyPatch) -> Proc:
    monkeypatch.setenv("GARAGE_BROKER_HEADER_TIMEOUT_S", str(HEAD_TIMEOUT_S))
    monkeypatch.setenv("GARAGE_BROKER_BODY_TIMEOUT_S", str(BODY_TIMEOUT_S))
    return start_broker()


def connect(broker: Proc) -> socket.socket:
    host, port = broker.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    """All the broker sends until it closes the connection, which it must within limit_s."""
    deadline = time.monotonic() + limit_s
    data = b""
    try:
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {limit_s} s; it sent {data!r}") from None
    except ConnectionResetError:
        return data


def trickle_until_closed(sock: socket.socket, data: bytes, limit_s: float) -> None:
    """Sends `data` a byte every 0.2 s (each byte keeps uvicorn's keep-alive timer at bay)
    until the broker closes the connection, which it must within limit_s."""
    deadline = time.monotonic() + limit_s
    for byte in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"still open after {limit_s} s of a byte every 0.2 s")
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed: EPIPE or ECONNRESET
            return
        time.sleep(0.2)
    raise AssertionError("the broker read the whole trickle without closing")


def head(method: str, path: str, *lines: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: garage", *lines, "", ""]).encode()


def test_a_connection_that_sends_nothing_is_closed(broker: Proc) -> None:
    with connect(broker) as sock:
        assert read_until_closed(sock, HEAD_TIMEOUT_S + SLACK_S) == b""


def test_half_a_head_is_answered_408_and_closed(broker: Proc) -> None:
    with connect(broker) as sock:
        sock.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: garage\r\nAuthor")
        answer = read_until_closed(sock, HEAD_TIMEOUT_S + SLACK_S)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


def test_a_head_that_trickles_in_is_closed(broker: Proc) -> None:
    endless = head("GET", "/v1/jobs", *(f"X-Filler-{i}: {'a' * 50}" for i in range(200)))
    with connect(broker) as sock:
        trickle_until_closed(sock, endless, HEAD_TIMEOUT_S + SLACK_S)


def test_a_second_request_on_the_connection_that_stalls_is_closed(broker: Proc) -> None:
    with connect(broker) as sock:
        sock.sendall(head("GET", "/healthz"))
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        time.sleep(HEAD_TIMEOUT_S + 0.5)  # the first request's time is not the second's
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert read_until_closed(sock, HEAD_TIMEOUT_S + SLACK_S).startswith(b"HTTP/1.1 408 ")


def test_half_a_body_is_answered_408_and_closed(broker: Proc) -> None:
    with connect(broker) as sock:
        sock.sendall(
            head("POST", "/v1/jobs", f"Authorization: Bearer {ADMIN_KEY}",
                 "Content-Type: application/json", "Content-Length: 100")
            + b'{"model": "m",'
        )  # fmt: skip
        answer = read_until_closed(sock, BODY_TIMEOUT_S + SLACK_S)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


def test_a_body_that_keeps_coming_is_read_however_long_it_takes(broker: Proc) -> None:
    body = json.dumps(CHAT)
    with connect(broker) as sock:
        sock.sendall(
            head("POST", "/v1/jobs", f"Authorization: Bearer {ADMIN_KEY}",
                 "Content-Type: application/json", f"Content-Length: {len(body)}")
        )  # fmt: skip
        size = len(body) // 5 + 1
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        for piece in pieces:  # longer than the body timeout in all, never a stall of it
            time.sleep(BODY_TIMEOUT_S / 4)
            sock.sendall(piece.encode())
        assert len(pieces) * BODY_TIMEOUT_S / 4 > BODY_TIMEOUT_S
        sock.settimeout(SLACK_S)
        assert sock.recv(65536).startswith(b"HTTP/1.1 201 ")


async def test_long_polls_and_event_streams_outlast_the_timeouts(broker: Proc) -> None:
    """Only the reading of a request is timed: a worker's poll, a wait for a job and an
    event stream each stay quiet for longer than both timeouts and still answer."""
    quiet_s = BODY_TIMEOUT_S + 1
    user = {"Authorization": f"Bearer {make_key(broker.url, 'user')}"}
    worker = {"Authorization": f"Bearer {make_key(broker.url, 'worker')}"}

    def poll(model: str, wait_s: float) -> dict:
        return {"worker_id": "w1", "models": [model], "slots_free": 1, "slots_total": 1,
                "wait_s": wait_s}  # fmt: skip

    async with httpx.AsyncClient(base_url=broker.url, timeout=30) as http:
        job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
        async with aconnect_sse(http, "GET", f"/v1/jobs/{job['id']}/events", headers=user) as sse:
            events = sse.aiter_sse()
            assert json.loads((await anext(events)).data)["status"] == "queued"

            started = time.monotonic()
            waited = await http.get(
                f"/v1/jobs/{job['id']}", params={"wait_s": quiet_s}, headers=user
            )
            assert waited.status_code == 200 and waited.json()["status"] == "queued"
            nothing = await http.post(
                "/v1/worker/poll", json=poll("other", quiet_s), headers=worker
            )
            assert nothing.status_code == 200 and nothing.json()["leases"] == []
            assert time.monotonic() - started >= 2 * quiet_s - 0.5

            leased = await http.post("/v1/worker/poll", json=poll("m", 0), headers=worker)
            assert [lease["job_id"] for lease in leased.json()["leases"]] == [job["id"]]
            running = json.loads((await asyncio.wait_for(anext(events), 10)).data)
            assert running["status"] == "running"
