"""arq: two `arq peers.arq.WorkerSettings` processes (asyncio, `max_jobs` 10 each), jobs
queued with `ArqRedis.enqueue_job` and results read with `Job.result`, which polls Redis
every `poll_delay` seconds. Two peers: arq's default poll delay (0.5 s), used by the
workers and by `Job.result` alike, and 0.01 s for both.

`WorkerSettings` is what the workers import; it is built from BENCH_PEER_REDIS,
BENCH_PEER_TUNED and BENCH_PEER_POLL_DELAY_S, and is empty in the runner.

Redelivery: a job stays in the queue's sorted set while it runs; the worker that takes it
sets an in-progress key that expires after `job_timeout + 10` s (the 10 is fixed). Once it
has expired, any worker's next poll takes the job again (try 2 of `max_tries`). Tuned: a
short `job_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, ResultNotFound

from . import starts
from .base import WORKER, Drain, Queued, Setting, Start
from .timing import async_rounds
from .workers import READY, TUNED_ENV, URL_ENV, pair, tuned

__all__ = ["ArqPeer", "WorkerSettings"]

POLL_ENV = "BENCH_PEER_POLL_DELAY_S"
DEFAULT_POLL_DELAY_S = 0.5  # arq's own default (Worker.poll_delay, Job.result's poll_delay)
JOB_TIMEOUT_S = 5  # tuned; more than the held job's 2 s
RESULT_TIMEOUT_S = 10
DRAIN_TIMEOUT_S = 900
STOP_GRACE_S = 2.0  # arq 0.25 at times never ends on SIGTERM (fixed in 0.26, arq #370)

SETTINGS = (
    Setting("job_timeout (in-progress key: job_timeout + 10 s)", "300 s (310 s)",
            f"{JOB_TIMEOUT_S} s ({JOB_TIMEOUT_S + 10} s)",
            "arq docs, Worker: job_timeout; arq/worker.py Worker.__init__, "
            "in_progress_timeout_s"),
    Setting("max_tries", "5", "the same", "arq docs, Retrying jobs; arq/worker.py"),
    Setting("poll_delay (worker and Job.result)", "0.5 s", "the same (a second peer: 0.01 s)",
            "arq docs, Worker: poll_delay; arq/jobs.py Job.result"),
)  # fmt: skip


async def noop(ctx: dict[str, Any]) -> float:
    return time.time()


async def hold(ctx: dict[str, Any], token: str, job_s: float) -> float:
    await ctx["redis"].rpush(starts.key(token), starts.entry())
    await asyncio.sleep(job_s)
    return time.time()


async def _ready(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr(READY)


def _worker_settings() -> dict[str, Any]:
    settings: dict[str, Any] = {
        "functions": [noop, hold],
        "on_startup": _ready,
        "redis_settings": RedisSettings.from_dsn(os.environ[URL_ENV]),
        "poll_delay": float(os.environ[POLL_ENV]),
    }
    if tuned():
        settings["job_timeout"] = JOB_TIMEOUT_S
    return settings


WorkerSettings = _worker_settings() if URL_ENV in os.environ else {}


async def _result(job: Job, timeout_s: float, poll_delay_s: float) -> Any:
    """`Job.result`, and the result after all where arq 0.25 says there is none: it reads
    the result and the queue in two round trips (one transaction from 0.26 on, arq #374),
    so a job that ends between them is reported missing."""
    try:
        return await job.result(timeout_s, poll_delay=poll_delay_s)
    except ResultNotFound:
        info = await job.result_info()
        if info is None:
            raise
        assert info.success, info
        return info.result


class ArqPeer:
    kill_targets = (WORKER,)
    settings = SETTINGS

    def __init__(self, poll_delay_s: float = DEFAULT_POLL_DELAY_S) -> None:
        self.poll_delay_s = poll_delay_s
        default = poll_delay_s == DEFAULT_POLL_DELAY_S
        self.name = "arq" if default else f"arq-poll-{poll_delay_s:g}"

    @contextlib.contextmanager
    def session(self, redis_url: str, db: int, folder: Path, *, tuned: bool) -> Iterator[_Session]:
        url = f"{redis_url}/{db}"
        client = starts.connect(url)
        client.flushdb()
        try:
            yield _Session(self, client, url, folder, tuned)
        finally:
            client.flushdb()
            client.close()


class _Session:
    def __init__(
        self, peer: ArqPeer, client: redis.Redis, url: str, folder: Path, is_tuned: bool
    ) -> None:
        self.peer, self.client, self.url, self.folder, self.tuned = (
            peer, client, url, folder, is_tuned,
        )  # fmt: skip

    @contextlib.contextmanager
    def workers(self, *, for_kill: bool = False) -> Iterator[list[int]]:
        command = [sys.executable, "-m", "arq", "peers.arq.WorkerSettings"]
        env = {URL_ENV: self.url, TUNED_ENV: "1" if self.tuned else "0",
               POLL_ENV: str(self.peer.poll_delay_s)}  # fmt: skip
        self.client.delete(READY)
        try:
            with pair([command, command], name=self.peer.name, folder=self.folder, env=env,
                      ready=lambda: int(self.client.get(READY) or 0) >= 2,
                      grace_s=STOP_GRACE_S) as pids:  # fmt: skip
                yield pids
        finally:
            if for_kill:
                self.client.flushdb()

    def round_trips(self, count: int, *, warmup: int, budget_s: float) -> list[float]:
        async def timed() -> list[float]:
            pool = await self._pool()
            try:

                async def one() -> None:
                    job = await pool.enqueue_job("noop")
                    assert job is not None
                    result = await _result(job, RESULT_TIMEOUT_S, self.peer.poll_delay_s)
                    assert isinstance(result, float), result

                return await async_rounds(one, count, warmup=warmup, budget_s=budget_s)
            finally:
                await pool.aclose()

        return asyncio.run(timed())

    def enqueue(self, jobs: int) -> Queued:
        async def queued() -> list[str]:
            pool = await self._pool()
            try:
                handles = [await pool.enqueue_job("noop") for _ in range(jobs)]
                return [job.job_id for job in handles if job is not None]
            finally:
                await pool.aclose()

        start = time.perf_counter()
        ids = asyncio.run(queued())
        return Queued(ids, jobs / (time.perf_counter() - start))

    def drained(self, queued: Queued) -> Drain:
        async def ends() -> list[float]:
            pool = await self._pool()
            try:
                poll_s = self.peer.poll_delay_s
                await _result(Job(queued.handles[-1], pool), DRAIN_TIMEOUT_S, poll_s)
                found = []
                for job_id in queued.handles:  # one by one: arq's all_job_results gathers
                    job = Job(job_id, pool)  # every key at once, past the pool's limit
                    info = await job.result_info()
                    if info is None:  # the other worker's last few
                        await _result(job, DRAIN_TIMEOUT_S, poll_s)
                        info = await job.result_info()
                    found.append(info)
                assert all(r is not None and r.success for r in found)
                return [r.result for r in found]
            finally:
                await pool.aclose()

        times = asyncio.run(ends())
        return Drain(len(times), max(times) - min(times))

    def hold(self, token: str, job_s: float) -> None:
        async def submit() -> None:
            pool = await self._pool()
            try:
                await pool.enqueue_job("hold", token, job_s)
            finally:
                await pool.aclose()

        asyncio.run(submit())

    def next_start(self, token: str, timeout_s: float) -> Start | None:
        return starts.next_start(self.client, token, timeout_s)

    async def _pool(self) -> ArqRedis:
        return await create_pool(RedisSettings.from_dsn(self.url))
