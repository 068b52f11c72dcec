"""Real processes: `garage broker run` subprocesses, stopped with signals like in production."""

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
_LISTENING = re.compile(r"garage broker listening on (http://\S+)")


@dataclass
class BrokerProcess:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    started: list[BrokerProcess] = []

    def start(*args: str, name: str = "broker", port: int = 0) -> BrokerProcess:
        log = tmp_path / f"{name}-{len(started)}.log"
        if "--redis-url" not in args and "--data-dir" not in args:
            args = (*args, "--data-dir", str(tmp_path / f"{name}-{len(started)}-data"))
        process = spawn(
            garage_command("broker", "run", "--port", str(port), *args),
            env={"GARAGE_ADMIN_KEY": ADMIN_KEY},
            log=log,
        )

        def listening() -> str | None:
            if process.poll() is not None:
                raise AssertionError(f"broker exited:\n{log.read_text()}")
            found = _LISTENING.search(log.read_text())
            return found.group(1) if found else None

        url = wait_until(listening, timeout_s=30, what="the broker to listen")
        broker = BrokerProcess(process=process, url=url, log=log)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        if broker.process.poll() is None:
            broker.process.kill()
            broker.process.wait()


_FAKE_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Proc:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)


@pytest.fixture
def start_fake(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """A fake Ollama or OpenAI-compatible server as a subprocess."""
    started: list[Proc] = []

    def start(kind: str, *args: str, port: int = 0) -> Proc:
        log = tmp_path / f"fake-{kind}-{len(started)}.log"
        process = spawn(
            [sys.executable, "-m", f"tests.fakes.{kind}", "--port", str(port), *args],
            log=log,
            cwd=ROOT,
        )

        def listening() -> str | None:
            if process.poll() is not None:
                raise AssertionError(f"fake {kind} exited:\n{log.read_text()}")
            found = _FAKE_LISTENING.search(log.read_text())
            return found.group(1) if found else None

        proc = Proc(process, wait_until(listening, timeout_s=30, what=f"fake {kind}"), log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


def make_key(broker_url: str, role: str, name: str = "e2e") -> str:
    reply = httpx.post(
        f"{broker_url}/v1/admin/keys",
        json={"role": role, "name": name},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["key"]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """`garage worker run` as a subprocess, returned once the fleet view lists it."""
    started: list[Proc] = []

    def start(
        broker_url: str,
        backend: str,
        backend_url: str,
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
        wait_for_models: bool = True,
    ) -> Proc:
        name = name or f"rig-{len(started)}"
        log = tmp_path / f"worker-{name}.log"
        process = spawn(
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
            env={
                "GARAGE_WORKER_TOKEN": make_key(broker_url, "worker", name),
                "GARAGE_WORKER_HEALTH_INTERVAL_S": "0.3",
                **(env or {}),
            },
            log=log,
        )

        def listed() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker {name} exited:\n{log.read_text()}")
            fleet = httpx.get(f"{broker_url}/v1/workers", headers=ADMIN_HEADERS).json()["data"]
            return any(w["name"] == name and (w["models"] or not wait_for_models) for w in fleet)

        wait_until(listed, timeout_s=30, what=f"worker {name} in the fleet")
        proc = Proc(process, broker_url, log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
