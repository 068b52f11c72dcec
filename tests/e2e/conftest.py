"""Real processes: `garage broker run` subprocesses, stopped with signals like in production."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..support import garage_command, spawn, wait_until

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

    def start(*args: str, name: str = "broker") -> BrokerProcess:
        log = tmp_path / f"{name}-{len(started)}.log"
        process = spawn(
            garage_command("broker", "run", "--port", "0", *args),
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
