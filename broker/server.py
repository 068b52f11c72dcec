"""Runs the broker under uvicorn, with the store it was configured for.

Owns the process-level lifecycle: open the store (starting the embedded redis-server when
no URL is given), serve until SIGINT/SIGTERM, then stop uvicorn and the store in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

import uvicorn

from .app import build_app
from .clock import system_clock
from .settings import BrokerSettings
from .store import open_store

__all__ = ["run", "serve"]

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, minus re-raising SIGINT/SIGTERM once it has stopped: the signal would
    kill the process before the store (and the embedded redis-server) is closed."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def serve(settings: BrokerSettings, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serves until the process is asked to stop; `on_ready` gets the URL once listening."""
    async with open_store(
        system_clock,
        redis_url=settings.redis_url,
        data_dir=settings.data_dir,
        lease_ms=settings.lease_ms,
        retention_ms=settings.retention_ms,
        worker_alive_ms=settings.worker_alive_ms,
    ) as store:
        app = build_app(settings, store=store)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=5,
            log_config=None,
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve())
        # uvicorn exposes readiness only as a flag, so look at it until it flips.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://{settings.host}:{port}"
            logger.info("broker.listening", extra={"url": url, "store": store.kind})
            if on_ready is not None:
                on_ready(url)
        await serving


def run(settings: BrokerSettings, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Runs `serve` on uvloop where it is installed."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(settings, on_ready=on_ready))
