"""RQ: two `rq worker` processes (the default worker, which forks a work horse for each
job), jobs enqueued with `Queue.enqueue` and results read with `Job.latest_result`, which
blocks on the job's result stream.

The job functions here are what the workers import (`peers.rq.noop`, `peers.rq.hold`).

Redelivery: a running job sits in the queue's StartedJobRegistry with an expiry the work
horse keeps pushing forward (`min(job_timeout, job_monitoring_interval) + 60` s at each
heartbeat). A worker's maintenance pass (every `maintenance_interval`, run from its
dequeue loop, whose wait is `worker_ttl - 15` s) hands an expired entry to
AbandonedJobError handling: retried if the job has retries left, otherwise moved to the
FailedJobRegistry. By default a job has no retries, so a dead worker's job is never run
again. Tuned: `Retry(max=1)`, a short `job_timeout`, and maintenance every second. If only
the work horse dies, its worker sees it at once and does the same (retry or fail).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from rq import Queue, Retry, Worker

from . import starts
from .base import WORKER, Drain, Queued, Setting, Start
from .timing import rounds
from .workers import URL_ENV, pair

__all__ = ["RQPeer", "hold", "noop"]

QUEUE = "bench"
WORK_HORSE = "work horse"
JOB_TIMEOUT_S = 5  # tuned; more than the held job's 2 s
RESULT_TIMEOUT_S = 10
DRAIN_TIMEOUT_S = 900

TUNED_WORKER = ["--maintenance-interval", "1", "--worker-ttl", "16"]

SETTINGS = (
    Setting("retry (enqueue)", "None: no retries", "Retry(max=1)",
            "RQ docs, Exceptions & Retries: Retrying Failed Jobs; rq/registry.py "
            "StartedJobRegistry.cleanup"),
    Setting("job_timeout (enqueue)", "180 s", f"{JOB_TIMEOUT_S} s",
            "RQ docs, Jobs; rq/queue.py Queue.DEFAULT_TIMEOUT"),
    Setting("started-registry expiry", "min(job_timeout, job_monitoring_interval) + 60 s, "
            "the 60 fixed", "the same: 65 s", "rq/worker/base.py get_heartbeat_ttl"),
    Setting("--maintenance-interval", "600 s", "1 s",
            "RQ docs, Workers; rq/defaults.py DEFAULT_MAINTENANCE_TASK_INTERVAL"),
    Setting("--worker-ttl (dequeue wait = ttl - 15)", "420 s", "16 s",
            "RQ docs, Workers; rq/defaults.py DEFAULT_WORKER_TTL"),
)  # fmt: skip


def noop() -> float:
    return time.time()


def hold(token: str, job_s: float) -> float:
    with redis.Redis.from_url(os.environ[URL_ENV]) as client:
        client.rpush(starts.key(token), starts.entry())
    time.sleep(job_s)
    return time.time()


class RQPeer:
    name = "rq"
    kill_targets = (WORKER, WORK_HORSE)
    settings = SETTINGS

    @contextlib.contextmanager
    def session(self, redis_url: str, db: int, folder: Path, *, tuned: bool) -> Iterator[_Session]:
        url = f"{redis_url}/{db}"
        client = starts.connect(url)
        client.flushdb()
        try:
            yield _Session(Queue(QUEUE, connection=client), client, url, folder, tuned)
        finally:
            client.flushdb()
            client.close()


class _Session:
    def __init__(
        self, queue: Queue, client: redis.Redis, url: str, folder: Path, tuned: bool
    ) -> None:
        self.queue, self.client, self.url, self.folder, self.tuned = (
            queue, client, url, folder, tuned,
        )  # fmt: skip

    @contextlib.contextmanager
    def workers(self, *, for_kill: bool = False) -> Iterator[list[int]]:
        suffix = uuid.uuid4().hex[:6]  # a killed worker's name stays registered a while
        commands = [
            [sys.executable, "-m", "rq.cli", "worker", "--url", self.url, "--name",
             f"rq-{i}-{suffix}", "--logging_level", "WARNING",
             *(TUNED_WORKER if self.tuned else []), QUEUE]
            for i in range(2)
        ]  # fmt: skip
        ready = lambda: Worker.count(connection=self.client, queue=self.queue) >= 2  # noqa: E731
        try:
            with pair(commands, name="rq", folder=self.folder, env={URL_ENV: self.url},
                      ready=ready) as pids:  # fmt: skip
                yield pids
        finally:
            if for_kill:
                self.client.flushdb()

    def round_trips(self, count: int, *, warmup: int, budget_s: float) -> list[float]:
        def one() -> None:
            result = self.queue.enqueue(noop).latest_result(timeout=RESULT_TIMEOUT_S)
            assert result is not None and result.type.name == "SUCCESSFUL", result

        return rounds(one, count, warmup=warmup, budget_s=budget_s)

    def enqueue(self, jobs: int) -> Queued:
        start = time.perf_counter()
        handles = [self.queue.enqueue(noop) for _ in range(jobs)]
        return Queued(handles, jobs / (time.perf_counter() - start))

    def drained(self, queued: Queued) -> Drain:
        handles = queued.handles
        handles[-1].latest_result(timeout=DRAIN_TIMEOUT_S)
        ends = []
        for job in handles:
            result = job.latest_result() or job.latest_result(timeout=RESULT_TIMEOUT_S)
            assert result is not None and result.type.name == "SUCCESSFUL", result
            ends.append(result.return_value)
        return Drain(len(ends), max(ends) - min(ends))

    def hold(self, token: str, job_s: float) -> None:
        if self.tuned:
            self.queue.enqueue(hold, token, job_s, job_timeout=JOB_TIMEOUT_S, retry=Retry(max=1))
        else:
            self.queue.enqueue(hold, token, job_s)

    def next_start(self, token: str, timeout_s: float) -> Start | None:
        return starts.next_start(self.client, token, timeout_s)
