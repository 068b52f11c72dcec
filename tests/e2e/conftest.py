"""Real processes: broker, workers and fake backends as subprocesses, stopped with signals
as in production. Each fixture kills what it started when the test ends."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..support import ROOT, garage_command, spawn, wait_until

ADMIN_KEY = "e2e-admin-key"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Proc:
    process: subprocess.Popen
    url: str  # what it serves (broker, fake) or talks to (worker)
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)


class Processes:
    """Starts subprocesses into `tmp_path` logs and kills the survivors at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Proc] = []

    def spawn(
        self,
        args: list[str],
        name: str,
        *,
        env: dict[str, str] | None = None,
        ready: Callable[[subprocess.Popen, Path], str | None],
        what: str,
    ) -> Proc:
        log = self.tmp_path / f"{name}-{len(self.started)}.log"
        process = spawn(args, env=env, log=log, cwd=ROOT)

        def up() -> str | None:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{log.read_text()}")
            return ready(process, log)

        proc = Proc(process, wait_until(up, timeout_s=30, what=what), log)
        self.started.append(proc)
        return proc

    def spawn_listening(self, args: list[str], name: str, **options) -> Proc:
        """A process that prints `listening on URL` once it serves."""

        def listening(process: subprocess.Popen, log: Path) -> str | None:
            found = _LISTENING.search(log.read_text())
            return found.group(1) if found else None

        return self.spawn(args, name, ready=listening, what=f"{name} to listen", **options)

    def kill_all(self) -> None:
        """SIGTERM first, so brokers stop their redis-server; SIGKILL what lingers."""
        for proc in self.started:
            if proc.process.poll() is None:
                proc.process.terminate()
        for proc in self.started:
            try:
                proc.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.kill_all()


@pytest.fixture
def start_broker(processes: Processes) -> Callable[..., Proc]:
    """`garage broker run`; on its own embedded store unless given --redis-url/--data-dir."""

    def start(
        *args: str, name: str = "broker", port: int = 0, env: dict[str, str] | None = None
    ) -> Proc:
        if "--redis-url" not in args and "--data-dir" not in args:
            data = processes.tmp_path / f"{name}-{len(processes.started)}-data"
            args = (*args, "--data-dir", str(data))
        return processes.spawn_listening(
            garage_command("broker", "run", "--port", str(port), *args),
            name,
            env={"GARAGE_ADMIN_KEY": ADMIN_KEY, **(env or {})},
        )

    return start


@pytest.fixture
def start_fake(processes: Processes) -> Callable[..., Proc]:
    """A fake Ollama or OpenAI-compatible server."""

    def start(kind: str, *args: str, port: int = 0) -> Proc:
        return processes.spawn_listening(
            [sys.executable, "-m", f"tests.fakes.{kind}", "--port", str(port), *args],
            f"fake-{kind}",
        )

    return start


def make_key(broker_url: str, role: str, name: str = "e2e", **limits: int) -> str:
    """A new key's secret; `limits` (requests_per_minute=..., 0: none) are set on it."""
    reply = httpx.post(
        f"{broker_url}/v1/admin/keys", json={"role": role, "name": name}, headers=ADMIN_HEADERS
    )
    assert reply.status_code == 201, reply.text
    if limits:
        key_id = reply.json()["id"]
        put = httpx.put(
            f"{broker_url}/v1/admin/keys/{key_id}/limits", json=limits, headers=ADMIN_HEADERS
        )
        assert put.status_code == 200, put.text
    return reply.json()["key"]


@pytest.fixture
def start_worker(processes: Processes) -> Callable[..., Proc]:
    """`garage worker run`, returned once the fleet view lists it."""
    count = 0

    def start(
        broker_url: str,
        backend: str,
        backend_url: str,
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        nonlocal count
        name = name or f"rig-{count}"
        count += 1

        def listed(process: subprocess.Popen, log: Path) -> str | None:
            fleet = httpx.get(f"{broker_url}/v1/workers", headers=ADMIN_HEADERS).json()["data"]
            return broker_url if any(w["name"] == name and w["models"] for w in fleet) else None

        return processes.spawn(
            garage_command(
                "worker",
                "run",
                "--broker",
                broker_url,
                "--backend",
                backend,
                "--backend-url",
                backend_url,
                "--name",
                name,
                *args,
            ),
            f"worker-{name}",
            env={
                "GARAGE_WORKER_TOKEN": make_key(broker_url, "worker", name),
                "GARAGE_WORKER_HEALTH_INTERVAL_S": "0.3",
                **(env or {}),
            },
            ready=listed,
            what=f"worker {name} in the fleet",
        )

    return start
