"""dramatiq on its Redis broker, with the Results middleware on a Redis backend in the same
database: two `dramatiq peers.dramatiq --processes 1` invocations (each a supervising
process and one worker process of 8 threads, the default), messages sent with
`RedisBroker.enqueue` and results read with `RedisBackend.get_result(block=True)`, which
blocks on the result's list.

The actors here are what the workers import; the module-level broker is built from
BENCH_PEER_REDIS / BENCH_PEER_TUNED in a worker, and is a stub in the runner, which sends
through a RedisBroker of its own per session.

Redelivery: a worker process heartbeats with every command it sends; a fetched message
sits in that worker's ack set until acknowledged. Queue maintenance, run by a random
`maintenance_chance` in a million of the commands any process sends, puts back the
unacknowledged messages of workers whose last heartbeat is older than
`heartbeat_timeout`. (`requeue_deadline` and `requeue_interval` had no effect since 1.2.0
and were removed in 2.0.) Tuned: a short `heartbeat_timeout`, maintenance on every command.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend, StubBackend

from . import starts
from .base import WORKER, Drain, Queued, Setting, Start
from .timing import rounds
from .workers import READY, TUNED_ENV, URL_ENV, pair, tuned

__all__ = ["DramatiqPeer", "hold", "noop"]

QUEUE = "bench"
HEARTBEAT_TIMEOUT_MS = 5_000  # tuned; workers heartbeat at least every second when idle
EVERY_COMMAND = 1_000_000  # maintenance_chance is out of a million
RESULT_TIMEOUT_MS = 10_000
DRAIN_TIMEOUT_MS = 900_000

TUNED: dict[str, Any] = {
    "heartbeat_timeout": HEARTBEAT_TIMEOUT_MS,
    "maintenance_chance": EVERY_COMMAND,
}

SETTINGS = (
    Setting("RedisBroker heartbeat_timeout", "60000 ms", f"{HEARTBEAT_TIMEOUT_MS} ms",
            "dramatiq docs, API reference: RedisBroker; dramatiq/brokers/redis.py "
            "DEFAULT_HEARTBEAT_TIMEOUT"),
    Setting("RedisBroker maintenance_chance", "1000 (per million commands)",
            f"{EVERY_COMMAND} (every command)",
            "dramatiq docs, API reference: RedisBroker; dramatiq/brokers/redis.py "
            "DEFAULT_MAINTENANCE_CHANCE, redis/dispatch.lua"),
    Setting("requeue_deadline, requeue_interval", "removed in 2.0 (no effect since 1.2)",
            "-", "dramatiq docs, Changelog 2.0.0"),
    Setting("worker_timeout (idle poll backoff cap)", "1000 ms", "the same",
            "dramatiq/worker.py WORKER_TIMEOUT"),
)  # fmt: skip


class _Ready(Middleware):
    def after_worker_boot(self, broker: RedisBroker, worker: object) -> None:
        broker.client.incr(READY)


def _broker() -> RedisBroker | StubBroker:
    if URL_ENV not in os.environ:
        broker = StubBroker()
        broker.add_middleware(Results(backend=StubBackend()))
        return broker
    url = os.environ[URL_ENV]
    broker = RedisBroker(url=url, **(TUNED if tuned() else {}))
    broker.add_middleware(Results(backend=RedisBackend(url=url)))
    broker.add_middleware(_Ready())
    return broker


dramatiq.set_broker(_broker())


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def noop() -> float:
    return time.time()


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def hold(token: str, job_s: float) -> float:
    with redis.Redis.from_url(os.environ[URL_ENV]) as client:
        client.rpush(starts.key(token), starts.entry())
    time.sleep(job_s)
    return time.time()


class DramatiqPeer:
    name = "dramatiq"
    kill_targets = (WORKER,)
    settings = SETTINGS

    @contextlib.contextmanager
    def session(self, redis_url: str, db: int, folder: Path, *, tuned: bool) -> Iterator[_Session]:
        url = f"{redis_url}/{db}"
        broker = RedisBroker(client=starts.connect(url), **(TUNED if tuned else {}))
        backend = RedisBackend(client=starts.connect(url))
        broker.client.flushdb()
        try:
            yield _Session(broker, backend, url, folder, tuned)
        finally:
            broker.client.flushdb()
            broker.close()
            backend.client.close()


class _Session:
    def __init__(
        self, broker: RedisBroker, backend: RedisBackend, url: str, folder: Path, is_tuned: bool
    ) -> None:
        self.broker, self.backend, self.url, self.folder, self.tuned = (
            broker, backend, url, folder, is_tuned,
        )  # fmt: skip
        self.client = broker.client

    @contextlib.contextmanager
    def workers(self, *, for_kill: bool = False) -> Iterator[list[int]]:
        command = [sys.executable, "-m", "dramatiq", "peers.dramatiq", "--processes", "1"]
        env = {URL_ENV: self.url, TUNED_ENV: "1" if self.tuned else "0"}
        self.client.delete(READY)
        try:
            with pair([command, command], name="dramatiq", folder=self.folder, env=env,
                      ready=lambda: int(self.client.get(READY) or 0) >= 2) as pids:  # fmt: skip
                yield pids
        finally:
            if for_kill:
                self.client.flushdb()

    def round_trips(self, count: int, *, warmup: int, budget_s: float) -> list[float]:
        def one() -> None:
            message = self.broker.enqueue(noop.message())
            result = self.backend.get_result(message, block=True, timeout=RESULT_TIMEOUT_MS)
            assert isinstance(result, float), result

        return rounds(one, count, warmup=warmup, budget_s=budget_s)

    def enqueue(self, jobs: int) -> Queued:
        start = time.perf_counter()
        handles = [self.broker.enqueue(noop.message()) for _ in range(jobs)]
        return Queued(handles, jobs / (time.perf_counter() - start))

    def drained(self, queued: Queued) -> Drain:
        handles = queued.handles
        self.backend.get_result(handles[-1], block=True, timeout=DRAIN_TIMEOUT_MS)
        ends = [
            self.backend.get_result(message, block=True, timeout=RESULT_TIMEOUT_MS)
            for message in handles
        ]
        return Drain(len(ends), max(ends) - min(ends))

    def hold(self, token: str, job_s: float) -> None:
        self.broker.enqueue(hold.message(token, job_s))

    def next_start(self, token: str, timeout_s: float) -> Start | None:
        return starts.next_start(self.client, token, timeout_s)
