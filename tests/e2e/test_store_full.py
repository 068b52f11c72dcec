"""A Redis near its maxmemory: the broker refuses new work with 507 and Retry-After, loses
nothing, and the work already queued still runs to its end."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from garage.broker.store.embedded import find_redis_server

from ..support import free_port, wait_until
from .conftest import ADMIN_HEADERS, make_key

BODY = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "x" * 20_000}]},
    "wait_for_worker": True,
}


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of 8 MB that never evicts."""
    binary = find_redis_server()
    assert binary is not None
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir",
         str(tmp_path), "--maxmemory", "8mb", "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(port), timeout_s=10, what="redis-server to listen")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _fill(http: httpx.Client, url: str, user: dict[str, str], pause_s: float) -> tuple:
    """Submits until refused: the ids taken and the refusal."""
    taken: list[str] = []
    for _ in range(2000):  # 8 MB: a few hundred jobs of 20 KB
        reply = http.post(f"{url}/v1/jobs", json=BODY, headers=user)
        if reply.status_code != 201:
            return taken, reply
        taken.append(reply.json()["id"])
        time.sleep(pause_s)
    raise AssertionError("never refused")


def test_past_store_full_at_new_work_is_refused_and_queued_work_still_runs(
    start_broker, small_redis: str
) -> None:
    broker = start_broker("--redis-url", small_redis, env={"GARAGE_BROKER_STORE_FULL_AT": "0.6"})
    user = {"Authorization": f"Bearer {make_key(broker.url, 'user', 'filler')}"}
    worker = {"Authorization": f"Bearer {make_key(broker.url, 'worker', 'rig')}"}
    with httpx.Client(timeout=30) as http:
        taken, refused = _fill(http, broker.url, user, pause_s=0.01)
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"]["code"] == "store_full"
        assert refused.headers["retry-after"] == "30"
        assert "nearly full" in refused.json()["error"]["message"]
        # Nothing was lost, and the queued work still runs to its end.
        assert http.get(f"{broker.url}/v1/jobs/{taken[-1]}", headers=user).status_code == 200
        poll = {"worker_id": "w1", "models": ["m"], "slots_free": 1, "wait_s": 0}
        [lease] = http.post(f"{broker.url}/v1/worker/poll", json=poll, headers=worker).json()[
            "leases"
        ]
        done = http.post(
            f"{broker.url}/v1/worker/jobs/{lease['job_id']}/complete",
            json={"lease_token": lease["lease_token"], "result": {"text": "ok"}},
            headers=worker,
        )
        assert done.status_code == 200, done.text
        job = http.get(f"{broker.url}/v1/jobs/{lease['job_id']}", headers=ADMIN_HEADERS).json()
        assert job["status"] == "succeeded" and job["id"] == taken[0]
    log = broker.log.read_text()
    assert '"event": "store.full"' in log and "Traceback" not in log


def test_at_the_hard_limit_a_refused_script_is_a_507_and_writes_nothing(
    start_broker, small_redis: str
) -> None:
    # No soft limit: a flood reaches Redis's maxmemory before the broker's next reading.
    broker = start_broker("--redis-url", small_redis, env={"GARAGE_BROKER_STORE_FULL_AT": "1"})
    user = {"Authorization": f"Bearer {make_key(broker.url, 'user', 'filler')}"}
    with httpx.Client(timeout=30) as http:
        taken, refused = _fill(http, broker.url, user, pause_s=0)
        assert refused.status_code == 507 and refused.json()["error"]["code"] == "store_full"
        listed = http.get(f"{broker.url}/v1/jobs", params={"limit": 100}, headers=user).json()
        assert listed["data"][0]["id"] == taken[-1]  # the refused submit made no job
    assert '"event": "request.store_full"' in broker.log.read_text()
