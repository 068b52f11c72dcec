"""A broker whose Redis goes away answers 503 with Retry-After, logs one line per request
(no traceback), and serves again once Redis is back."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx
from click.testing import CliRunner

from garage.broker.store.embedded import find_redis_server
from garage.cli import main

from ..support import free_port, wait_until
from .conftest import ADMIN_HEADERS, ADMIN_KEY


def _redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    binary = find_redis_server()
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: _answers(port), timeout_s=10, what="redis-server to listen")
    return process


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_redis_gone_is_a_503_then_service_resumes(start_broker, tmp_path: Path) -> None:
    port = free_port()
    redis = _redis(port, tmp_path)
    broker = start_broker("--redis-url", f"redis://127.0.0.1:{port}")
    jobs = f"{broker.url}/v1/jobs"
    assert httpx.get(jobs, headers=ADMIN_HEADERS).status_code == 200
    redis.send_signal(signal.SIGKILL)
    redis.wait()
    down = httpx.get(jobs, headers=ADMIN_HEADERS, timeout=30)
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert down.json()["error"]["code"] == "unavailable"
    cli = CliRunner().invoke(
        main, ["job", "list", "--url", broker.url, "--api-key", ADMIN_KEY], catch_exceptions=False
    )
    assert cli.exit_code == 3, cli.output  # as for a broker it cannot reach: retry later
    assert "store cannot be reached" in cli.output
    redis = _redis(port, tmp_path)
    try:
        wait_until(
            lambda: httpx.get(jobs, headers=ADMIN_HEADERS, timeout=30).status_code == 200,
            timeout_s=20,
            what="the broker to serve again",
        )
    finally:
        redis.terminate()
        redis.wait()
    log = broker.log.read_text()
    assert "request.store_down" in log and "Traceback" not in log, log
