"""`garage broker run` without --redis-url keeps its state across restarts."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx

from ..support import garage_command, wait_until
from .conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "hi"}]},
    "wait_for_worker": True,
}


def test_job_survives_a_sigterm_restart(start_broker, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_broker("--data-dir", str(data_dir), name="first")
    job = httpx.post(f"{first.url}/v1/jobs", json=CHAT, headers=ADMIN).json()
    assert first.stop(signal.SIGTERM) == 0
    assert (data_dir / "appendonlydir").exists() or (data_dir / "appendonly.aof").exists()

    second = start_broker("--data-dir", str(data_dir), name="second")
    again = httpx.get(f"{second.url}/v1/jobs/{job['id']}", headers=ADMIN)
    assert again.status_code == 200
    assert again.json()["status"] == "queued" and again.json()["request"] == job["request"]
    assert second.stop() == 0
    assert not (data_dir / "redis.sock").exists()  # the child redis-server stopped too


def test_admin_key_create_prints_only_the_key_with_quiet(start_broker, tmp_path: Path) -> None:
    broker = start_broker("--data-dir", str(tmp_path / "d"))
    env = {"GARAGE_URL": broker.url, "GARAGE_API_KEY": ADMIN_KEY, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        garage_command("admin", "key", "create", "--role", "user", "--name", "ann", "--quiet"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = out.stdout.strip()
    assert out.stdout == key + "\n" and key.startswith("gk-u-")
    assert (
        httpx.get(f"{broker.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )

    refused = subprocess.run(
        garage_command("admin", "key", "create", "--role", "admin", "--name", "x"),
        env={**env, "GARAGE_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 4 and "admin" in refused.stderr


def test_a_broker_killed_with_sigkill_takes_its_redis_server_along(
    start_broker, tmp_path: Path
) -> None:
    broker = start_broker("--data-dir", str(tmp_path / "d"))
    pid = int((tmp_path / "d" / "redis.pid").read_text())
    assert Path(f"/proc/{pid}").exists()
    broker.stop(signal.SIGKILL)

    def gone() -> bool:
        status = Path(f"/proc/{pid}/status")
        return not status.exists() or "State:\tZ" in status.read_text()

    wait_until(gone, timeout_s=20, what="the orphaned redis-server to stop")


def test_a_port_in_use_fails_at_once_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            garage_command("broker", "run", "--port", str(port), "--data-dir", str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "redis.pid").exists()  # nothing was started
