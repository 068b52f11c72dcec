"""Runs the broker under uvicorn, with the store it was configured for.

`BrokerServer` owns the process-level lifecycle: open the store (starting the embedded
redis-server when no URL is given), serve, then stop uvicorn and the store in that order.
Signals are the caller's: `serve` stops on SIGINT/SIGTERM; `garage up` stops the broker
after its worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

import uvicorn

from .app import BrokerApp, build_app
from .clock import system_clock
from .settings import BrokerSettings
from .slow_clients import head_timeout_protocol
from .store import Store, open_store

__all__ = ["BrokerServer", "BrokerStartError", "serve"]

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs it decides when it stops, so
    the store (and the embedded redis-server) is always closed after it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class BrokerServer:
    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.url = ""
        self.store: Store | None = None
        self._stack = contextlib.AsyncExitStack()
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._app: BrokerApp | None = None

    async def __aenter__(self) -> Self:
        settings = self.settings
        # Bound before anything starts, so a port in use fails at once and cleanly.
        listener = self._stack.enter_context(_listen(settings.host, settings.port))
        self.store = await self._stack.enter_async_context(
            open_store(
                system_clock,
                redis_url=settings.redis_url,
                data_dir=settings.data_dir,
                lease_ms=settings.lease_ms,
                retention_ms=settings.retention_ms,
                worker_alive_ms=settings.worker_alive_ms,
                max_connections=settings.redis_max_connections,
                embedded_max_memory_mb=settings.embedded_max_memory_mb,
            )
        )
        self._app = build_app(settings, store=self.store)
        config = uvicorn.Config(
            self._app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=5,
            log_config=None,
            # Nothing reads the client's address or scheme, so X-Forwarded-* from a proxy
            # in front (Caddy) needs no middleware on every request; nor do clients need a
            # Server header.
            proxy_headers=False,
            server_header=False,
            # uvicorn times out only idle keep-alive connections: a head that never ends
            # is closed by the protocol, a body that stops by the app (slow_clients.py).
            http=head_timeout_protocol(settings.header_timeout_s),
        )
        self._server = _Server(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[listener]))
        # uvicorn exposes readiness only as a flag, so look at it until it flips.
        while not self._server.started and not self._serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if not self._server.started:
            await self._stack.aclose()
            await self._serving  # raises what stopped it
            raise RuntimeError("the broker stopped while starting")
        port = listener.getsockname()[1]
        self.url = f"http://{settings.host}:{port}"
        logger.info("broker.listening", extra={"url": self.url, "store": self.store.kind})
        return self

    async def wait(self) -> None:
        """Returns when uvicorn stops on its own (e.g. it could not keep serving)."""
        assert self._serving is not None
        await asyncio.shield(self._serving)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None and self._serving is not None:
            assert self._app is not None
            self._app.state.broker.stop_waiting()
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        await self._stack.aclose()


class BrokerStartError(Exception):
    """The broker could not start serving (its address is taken, say)."""


@contextlib.contextmanager
def _listen(host: str, port: int) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BrokerStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        yield sock
    finally:
        sock.close()


async def serve(settings: BrokerSettings, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serves until SIGINT or SIGTERM; `on_ready` gets the URL once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with BrokerServer(settings) as server:
        if on_ready is not None:
            on_ready(server.url)
        stopped = asyncio.create_task(stop.wait())
        serving = asyncio.create_task(server.wait())
        await asyncio.wait({stopped, serving}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        logger.info("broker.stopping")
