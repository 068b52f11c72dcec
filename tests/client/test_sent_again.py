"""A request the broker may have read is sent again only when that cannot do harm: a
submit (which always carries an Idempotency-Key) yields one job however often it arrives;
any other POST is not sent twice."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from garage.client import AsyncClient, BrokerUnreachable

from ..conftest import Network
from ..support import eventually


@dataclass
class CuttingProxy:
    """Forwards loopback connections to the broker. Armed, it lets the next request whose
    head starts with `prefix` reach the broker, waits for the broker's whole answer (so the
    broker surely read and ran it), drops that answer and closes the client's connection."""

    target_port: int
    prefix: bytes = b"POST /v1/jobs "
    armed: bool = False
    seen: list[bytes] = field(default_factory=list)  # request heads, in order
    port: int = 0

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                body = await reader.readexactly(length)
                self.seen.append(head)
                up_writer.write(head + body)
                answer = await _read_answer(up_reader)
                if self.armed and head.startswith(self.prefix):
                    self.armed = False
                    writer.transport.abort()  # the broker ran it; the client hears nothing
                    return
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            up_writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    raise AssertionError(f"the test proxy reads only answers with a length: {head!r}")


def submits(proxy: CuttingProxy) -> int:
    return sum(head.startswith(b"POST /v1/jobs ") for head in proxy.seen)


async def test_a_submit_cut_off_after_the_broker_ran_it_is_one_job(network: Network) -> None:
    port = int(network.url.rsplit(":", 1)[1])
    async with (
        CuttingProxy(port) as proxy,
        AsyncClient(f"http://127.0.0.1:{proxy.port}", network.user_key) as client,
    ):
        await client.models()  # a kept-alive connection for the submit to reuse
        proxy.armed = True
        handle = await client.submit("m", "once only")
        assert submits(proxy) == 2  # the broker got the submit twice...
        assert (await handle.wait(timeout_s=10)).status.value == "succeeded"
        listed = await client.list(limit=10)
        assert [job.id for job in listed.data] == [handle.id]  # ...and made one job


async def test_a_post_without_an_idempotency_key_is_not_sent_twice(network: Network) -> None:
    port = int(network.url.rsplit(":", 1)[1])
    async with (
        CuttingProxy(port) as proxy,
        AsyncClient(f"http://127.0.0.1:{proxy.port}", network.user_key) as client,
    ):
        await client.models()
        proxy.armed = True
        body = {"model": "m", "request": {"messages": [{"role": "user", "content": "hi"}]}}
        with pytest.raises(BrokerUnreachable, match="not sent again"):
            await client._http.request("POST", "/v1/jobs", json=body)  # no Idempotency-Key
        assert submits(proxy) == 1

        async def one_job() -> bool:
            return len((await client.list(limit=10)).data) == 1

        await eventually(one_job, what="the one job the broker made")
