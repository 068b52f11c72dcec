"""A TCP proxy on loopback that a test can turn against the traffic it carries: stall it
(bytes held, connections left open, as on a link that went dark), cut it (every
connection closed, new ones refused for a while), or cut each connection at the first
byte of the answer (the server read the request; the client never hears back).

It runs its own event loop on a thread, so a test may block (start processes, call with
httpx) while it forwards; its controls may be called from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future

__all__ = ["Proxy"]

_CHUNK = 65536


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._cut_answers = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.answers_cut = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._serve, "127.0.0.1", 0)).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._close_all)
        self._run(asyncio.sleep(0.05)).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def stall(self) -> None:
        """Holds every byte, both ways, until `heal`; connections stay open."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def cut(self, down_s: float = 0.0) -> None:
        """Closes every connection and refuses new ones for `down_s` seconds."""

        async def cut() -> None:
            self._refusing = True
            self._close_all()
            await asyncio.sleep(down_s)
            self._refusing = False

        self._run(cut()).result(down_s + 10)

    def cut_answers(self, count: int) -> None:
        """The next `count` connections are closed when the server starts answering."""

        def arm() -> None:
            self._cut_answers = count

        self._loop.call_soon_threadsafe(arm)

    def _run(self, coro: object) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._refusing:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.transport.abort()
            return
        cut_answer = self._cut_answers > 0
        if cut_answer:
            self._cut_answers -= 1
        self._writers |= {client_w, server_w}
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, cut=False),
                self._pipe(server_r, client_w, cut=cut_answer),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, cut: bool
    ) -> None:
        while data := await reader.read(_CHUNK):
            await self._flowing.wait()
            if cut:
                self.answers_cut += 1
                writer.transport.abort()
                return
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
