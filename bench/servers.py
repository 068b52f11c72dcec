"""The processes a benchmark runs: a `redis-server` on a free loopback port, `garage broker
run` on it, `garage worker run` daemons, and a fake OpenAI-compatible backend. Each is
stopped when its block ends. Nothing here stands in for a garage process: the broker and
the workers are the shipped commands, started as a user would start them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from processes import running, start, stop

from garage.broker.store.embedded import find_redis_server
from garage.client import AsyncClient
from garage.contract import KeyLimitsUpdate

__all__ = [
    "ADMIN_KEY",
    "ROOT",
    "Service",
    "broker",
    "fake_openai",
    "free_port",
    "make_keys",
    "redis_server",
    "workers",
]

ADMIN_KEY = "bench-admin"
ROOT = Path(__file__).resolve().parent.parent


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
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    with running(start(command, log=folder / "redis.log", cwd=folder)):
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


def _garage(*args: str) -> list[str]:
    return [sys.executable, "-m", "garage.cli", *args]


@dataclass(frozen=True)
class Service:
    url: str
    pid: int


@contextlib.contextmanager
def _announced(command: list[str], log: Path, env: dict[str, str]) -> Iterator[Service]:
    """Runs `command` until the block ends; yields the URL it prints as 'listening on'."""
    log.write_bytes(b"")
    process = start(command, log=log, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    with running(process):
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on (http://\S+)", log.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[2:5]} did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield Service(found.group(1), process.pid)


def broker(
    redis_url: str, log: Path, options: Sequence[str] = ()
) -> contextlib.AbstractContextManager[Service]:
    """`garage broker run` on `redis_url` with `options`, with ADMIN_KEY as its admin key;
    its URL."""
    command = _garage("broker", "run", "--port", "0", "--redis-url", redis_url,
                      "--log-level", "warning", *options)  # fmt: skip
    return _announced(command, log, {"GARAGE_ADMIN_KEY": ADMIN_KEY})


def fake_openai(log: Path, *options: str) -> contextlib.AbstractContextManager[Service]:
    """The tests' fake OpenAI-compatible server (vLLM's wire format, SSE) as a process."""
    command = [sys.executable, "-m", "tests.fakes.openai", *options]
    return _announced(command, log, {})


async def make_keys(url: str) -> tuple[str, str]:
    """A user key without quotas (a benchmark sends thousands of submits a minute, past
    the broker's default of 600) and a worker key, made with the admin key."""
    async with AsyncClient(url, ADMIN_KEY) as admin:
        user = await admin.create_key("user", "bench-user")
        unlimited = KeyLimitsUpdate(requests_per_minute=0, max_active_jobs=0)
        await admin.set_key_limits(user.id, unlimited)
        worker = await admin.create_key("worker", "bench-worker")
    return user.key, worker.key


@contextlib.contextmanager
def workers(
    url: str, worker_key: str, count: int, folder: Path, options: Sequence[str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` `garage worker run` daemons with `options`, returned once the broker lists
    every one of them (their first poll arrived)."""
    env = {**os.environ, "GARAGE_WORKER_BROKER": url, "GARAGE_WORKER_TOKEN": worker_key}
    processes = []
    try:
        for i in range(count):
            log = folder / f"worker-{i}.log"
            log.write_bytes(b"")
            command = _garage("worker", "run", "--name", f"bench-{i}", "--log-level",
                              "warning", *options)  # fmt: skip
            processes.append(start(command, log=log, cwd=ROOT, env=env))
        asyncio.run(_until_listed(url, count, processes))
        yield processes
    finally:
        stop(processes)


async def _until_listed(url: str, count: int, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=url) as http:
        while True:
            reply = await http.get("/v1/workers", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            names = {w["name"] for w in reply.json()["data"]}
            if all(f"bench-{i}" in names for i in range(count)):
                return
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError("the workers did not come up; see worker-*.log")
            await asyncio.sleep(0.1)
