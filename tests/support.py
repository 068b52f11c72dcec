"""Test helpers that start real processes and wait for conditions, never sleeping blindly."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from garage.contract import Kind, Lane, Lease

ROOT = Path(__file__).resolve().parent.parent


class ManualClock:
    """A clock tests move by hand, so leases and deadlines expire on demand."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.01)


async def eventually(
    predicate: Callable[[], Awaitable[Any]], *, timeout_s: float = 10.0, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def garage_command(*args: str) -> list[str]:
    """The `garage` CLI as a subprocess, from the interpreter running the tests."""
    return [sys.executable, "-m", "garage.cli", *args]


def spawn(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    log: Path,
    cwd: Path | None = None,
    own_group: bool = False,
) -> subprocess.Popen:
    """Starts `args` logging to `log`; `own_group` gives it a process group of its own,
    like a command run from a terminal, so a test can Ctrl-C the whole group."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    handle = log.open("wb")
    return subprocess.Popen(
        args,
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        start_new_session=own_group,
    )


class WorkerThread:
    """A garage Worker on its own event loop in a thread, so sync tests (the CLI under
    click's runner, the blocking Client) have a worker while they block."""

    def __init__(
        self,
        broker_url: str,
        token: str,
        backend: Any,
        *,
        admin_key: str | None = None,
        **settings: Any,
    ) -> None:
        """With `admin_key`, entering waits until the broker's fleet view lists the worker
        (its first poll arrived), so an interactive submit cannot beat it to the broker."""
        from garage.client import WorkerAPI
        from garage.worker.daemon import Worker
        from garage.worker.settings import WorkerSettings

        self.loop = asyncio.new_event_loop()
        options = {"name": "thread-rig", "health_interval_s": 0.1, "poll_wait_s": 2, **settings}
        self._settings = WorkerSettings(broker=broker_url, token=token, **options)
        self._make_api = lambda: WorkerAPI(broker_url, token)
        self._make = lambda api: Worker(self._settings, api=api, backend=backend, gpu=None)
        self.worker: Any = None
        self._broker_url = broker_url
        self._admin_key = admin_key
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve() -> None:
            api = self._make_api()
            self.worker = self._make(api)
            self._ready.set()
            try:
                await self.worker.run()
            finally:
                await api.aclose()

        self.loop.run_until_complete(serve())

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        self._ready.wait(10)
        wait_until(lambda: self.worker.models, timeout_s=10, what="the worker's models")
        if self._admin_key is not None:
            wait_until(self._listed, timeout_s=10, what="the broker to list the worker")
        return self

    def _listed(self) -> bool:
        import httpx

        reply = httpx.get(
            f"{self._broker_url}/v1/workers",
            headers={"Authorization": f"Bearer {self._admin_key}"},
        )
        return any(w["worker_id"] == self.worker.worker_id for w in reply.json()["data"])

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.worker.request_stop)
        self.loop.call_soon_threadsafe(self.worker.request_stop)
        self._thread.join(timeout=20)


# A lease as the broker hands it out, for tests that need one without a broker.
LEASE = Lease(
    job_id="job_1",
    lease_token="t",
    attempt=1,
    model="m",
    kind=Kind.chat,
    lane=Lane.interactive,
    request={},
    lease_s=30,
)
