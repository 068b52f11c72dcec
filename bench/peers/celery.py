"""Celery on its Redis transport (kombu) with the Redis result backend, both in the peer's
database; two `celery worker` processes, with the solo pool (the job runs in the worker
process) or the prefork pool (`--concurrency 1`: one pool process per worker runs it).

The worker side is the module-level `app` (`celery -A peers.celery worker`), configured
from BENCH_PEER_REDIS / BENCH_PEER_TUNED; the runner's side makes an app of its own per
session, so that two sessions never share a connection.

Redelivery: by default a task is acknowledged as a worker takes it (`task_acks_late` is
False), so a worker that dies mid-task loses it. Tuned: acknowledged after it ran; an
unacknowledged message is put back once `visibility_timeout` has passed, by a worker's
periodic restore sweep (`unacked_restore_interval` x `unacked_restore_throttle`); and with
the prefork pool, a pool process that dies makes its parent reject the task back onto the
queue at once (`task_reject_on_worker_lost`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready

from . import starts
from .base import WORKER, Drain, Queued, Setting, Start
from .timing import rounds
from .workers import READY, TUNED_ENV, URL_ENV, pair, tuned

__all__ = ["CeleryPeer", "app"]

QUEUE = "bench"
POOL_PROCESS = "pool process"
VISIBILITY_TIMEOUT_S = 5  # more than the held job's 2 s, or a running job is sent again
RESULT_TIMEOUT_S = 10
DRAIN_TIMEOUT_S = 900

TUNED: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "broker_transport_options": {
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
}

SETTINGS = (
    Setting("task_acks_late", "False", "True",
            "Celery docs, Configuration: task_acks_late (celery/app/defaults.py)"),
    Setting("task_reject_on_worker_lost", "None (off)", "True",
            "Celery docs, Configuration: task_reject_on_worker_lost"),
    Setting("broker_transport_options visibility_timeout", "3600 s",
            f"{VISIBILITY_TIMEOUT_S} s",
            "Celery docs, Using Redis: Visibility timeout; kombu/transport/redis.py "
            "Channel.visibility_timeout"),
    Setting("broker_transport_options unacked_restore_interval", "10 s", "1 s",
            "kombu/transport/redis.py, Transport Options"),
    Setting("broker_transport_options unacked_restore_throttle", "10 (a scan every 10th "
            "sweep)", "1", "kombu/transport/redis.py, Transport Options"),
)  # fmt: skip


def _config(url: str, is_tuned: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": url,
        "result_backend": url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": QUEUE,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }
    return {**config, **TUNED} if is_tuned else config


app = Celery("bench-peers", set_as_current=False)
if URL_ENV in os.environ:
    app.conf.update(_config(os.environ[URL_ENV], tuned()))


@app.task(name="bench.noop")
def noop() -> float:
    return time.time()


@app.task(name="bench.hold")
def hold(token: str, job_s: float) -> float:
    with redis.Redis.from_url(os.environ[URL_ENV]) as client:
        client.rpush(starts.key(token), starts.entry())
    time.sleep(job_s)
    return time.time()


@worker_ready.connect
def _ready(**_: object) -> None:
    with redis.Redis.from_url(os.environ[URL_ENV]) as client:
        client.incr(READY)


class CeleryPeer:
    settings = SETTINGS

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.name = f"celery-{pool}"
        self.kill_targets = (WORKER,) if pool == "solo" else (WORKER, POOL_PROCESS)

    @contextlib.contextmanager
    def session(self, redis_url: str, db: int, folder: Path, *, tuned: bool) -> Iterator[_Session]:
        url = f"{redis_url}/{db}"
        client = starts.connect(url)
        client.flushdb()
        own = Celery(f"bench-{self.name}", set_as_current=False)
        own.conf.update(_config(url, tuned))
        try:
            yield _Session(self, own, client, url, folder, tuned)
        finally:
            # An AsyncResult unsubscribes from its result when it is freed, retrying for
            # as long as Redis does not answer: one freed after the run's redis-server
            # stopped (held by an interrupt's traceback) would hang the exit.
            consumer = own.backend.result_consumer
            consumer.stop()
            consumer.subscribed_to.clear()
            own.close()
            client.flushdb()
            client.close()


class _Session:
    def __init__(
        self, peer: CeleryPeer, app: Celery, client: redis.Redis, url: str, folder: Path,
        is_tuned: bool,
    ) -> None:  # fmt: skip
        self.peer, self.app, self.client, self.url = peer, app, client, url
        self.folder, self.tuned = folder, is_tuned

    @contextlib.contextmanager
    def workers(self, *, for_kill: bool = False) -> Iterator[list[int]]:
        pool = ["--pool", self.peer.pool]
        if self.peer.pool == "prefork":
            pool += ["--concurrency", "1"]
        commands = [
            [sys.executable, "-m", "celery", "-A", "peers.celery", "worker", *pool,
             "--queues", QUEUE, "--loglevel", "warning", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--hostname",
             f"{self.peer.name}-{i}@%h"]
            for i in range(2)
        ]  # fmt: skip
        self.client.delete(READY)
        env = {URL_ENV: self.url, TUNED_ENV: "1" if self.tuned else "0"}
        try:
            with pair(commands, name=self.peer.name, folder=self.folder, env=env,
                      ready=lambda: int(self.client.get(READY) or 0) >= 2) as pids:  # fmt: skip
                yield pids
        finally:
            if for_kill:
                self.client.flushdb()

    def round_trips(self, count: int, *, warmup: int, budget_s: float) -> list[float]:
        def one() -> None:
            result = self.app.send_task("bench.noop", queue=QUEUE).get(timeout=RESULT_TIMEOUT_S)
            assert isinstance(result, float), result

        return rounds(one, count, warmup=warmup, budget_s=budget_s)

    def enqueue(self, jobs: int) -> Queued:
        start = time.perf_counter()
        handles = [self.app.send_task("bench.noop", queue=QUEUE) for _ in range(jobs)]
        return Queued(handles, jobs / (time.perf_counter() - start))

    def drained(self, queued: Queued) -> Drain:
        handles = queued.handles
        handles[-1].get(timeout=DRAIN_TIMEOUT_S)
        ends = []
        for _, meta in self.app.backend.get_many([h.id for h in handles], timeout=DRAIN_TIMEOUT_S):
            assert meta["status"] == "SUCCESS", meta
            ends.append(meta["result"])
        assert len(ends) == len(handles)
        return Drain(len(ends), max(ends) - min(ends))

    def hold(self, token: str, job_s: float) -> None:
        self.app.send_task("bench.hold", args=(token, job_s), queue=QUEUE)

    def next_start(self, token: str, timeout_s: float) -> Start | None:
        return starts.next_start(self.client, token, timeout_s)
