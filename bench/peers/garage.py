"""garage as the other peers are run: `garage broker run` on the peer's database, two
`garage worker run` daemons on the demo backend (16 slots each), and the public client.
The round trip, the queue and the drain are `roundtrip.py`'s own (`latency`, `queue`,
`drained`); this module only fits them to the peers' interface.

The kill scenario's job is a chat on the demo backend, which streams its reply at
`--demo-tokens-per-s` words a second: a prompt of the right length makes a job of a known
length. Its starts are read from the job itself: its `attempt` (leases started so far),
its `worker`, and its `started_at` (the broker's time of the attempt's lease).

Redelivery: a job's lease lasts `--lease-s` unless the worker renews it (it does, every
lease_s / 3 at most, while the job runs); the broker's reaper (every `reap_interval_s`,
jittered) puts a job whose lease ran out back in its queue, as attempt 2 of `max_attempts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from roundtrip import DEMO, MODEL, drained, latency, queue, run
from servers import broker, make_keys, workers

from garage.client import AsyncClient
from garage.contract import JobStatus

from .base import WORKER, Drain, Queued, Setting, Start

__all__ = ["GaragePeer"]

LEASE_S = 5.0  # tuned
WORDS_PER_S = 20  # the demo backend's pace in the kill scenario
PACE = ["--backend", "demo", "--demo-tokens-per-s", str(WORDS_PER_S)]
REPLY_PREFIX_WORDS = 8  # "[garage demo backend, not a model] You said:" (worker/backends/demo.py)
SLOTS = ["--slots", "16"]
POLL_S = 0.05

SETTINGS = (
    Setting("garage broker run --lease-s", "30 s", f"{LEASE_S:g} s",
            "docs/configuration.md (BrokerSettings.lease_s)"),
    Setting("reap_interval_s (GARAGE_BROKER_REAP_INTERVAL_S)", "1 s, jittered 0.5-1.5x",
            "the same", "docs/configuration.md (BrokerSettings.reap_interval_s)"),
    Setting("max_attempts (per job)", "3", "the same", "docs/api.md (JobCreate.max_attempts)"),
)  # fmt: skip


class GaragePeer:
    name = "garage"
    kill_targets = (WORKER,)
    settings = SETTINGS

    @contextlib.contextmanager
    def session(self, redis_url: str, db: int, folder: Path, *, tuned: bool) -> Iterator[_Session]:
        url = f"{redis_url}/{db}"
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        options = ["--lease-s", f"{LEASE_S:g}"] if tuned else []
        try:
            with broker(url, folder / "broker.log", options) as service:
                user, worker = run(make_keys(service.url))
                yield _Session(service.url, user, worker, folder)
        finally:
            with redis.Redis.from_url(url) as client:
                client.flushdb()


class _Session:
    def __init__(self, url: str, user: str, worker: str, folder: Path) -> None:
        self.url, self.user, self.worker, self.folder = url, user, worker, folder
        self.held: dict[str, str] = {}  # token -> job id
        self.seen: dict[str, int] = {}  # token -> attempts returned by next_start
        self.pids: list[int] = []

    @contextlib.contextmanager
    def workers(self, *, for_kill: bool = False) -> Iterator[list[int]]:
        options = [*(PACE if for_kill else DEMO), *SLOTS]
        # servers.workers names the logs worker-<i>.log; a folder per start keeps them all
        logs = Path(tempfile.mkdtemp(prefix="garage-", dir=self.folder))
        try:
            with workers(self.url, self.worker, 2, logs, options) as processes:
                self.pids = [process.pid for process in processes]
                yield self.pids
        finally:
            if for_kill:
                run(self._cancel_held())

    def round_trips(self, count: int, *, warmup: int, budget_s: float) -> list[float]:
        return run(latency(self.url, self.user, count, warmup=warmup, budget_s=budget_s))

    def enqueue(self, jobs: int) -> Queued:
        ids, per_s = run(queue(self.url, self.user, jobs))
        return Queued(ids, per_s)

    def drained(self, queued: Queued) -> Drain:
        jobs = len(queued.handles)
        return Drain(jobs, jobs / run(drained(self.url, self.user, queued.handles)))

    def hold(self, token: str, job_s: float) -> None:
        words = max(1, round(job_s * WORDS_PER_S) - REPLY_PREFIX_WORDS)
        self.held[token] = run(self._submit(" ".join(["word"] * words)))
        self.seen[token] = 0

    def next_start(self, token: str, timeout_s: float) -> Start | None:
        start = run(self._next_start(self.held[token], self.seen[token] + 1, timeout_s))
        if start is not None:
            self.seen[token] += 1
        return start

    async def _submit(self, prompt: str) -> str:
        async with AsyncClient(self.url, self.user) as client:
            return (await client.submit(MODEL, prompt)).id

    async def _next_start(self, job_id: str, attempt: int, timeout_s: float) -> Start | None:
        # the job's `attempt` (leases started so far), looked at every POLL_S; the time is
        # the attempt's own `started_at`, so the look's period adds nothing to the figure
        deadline = time.monotonic() + timeout_s
        async with AsyncClient(self.url, self.user) as client:
            while time.monotonic() < deadline:
                job = await client.get(job_id)
                if job.attempt >= attempt and job.status is not JobStatus.queued:
                    assert job.started_at is not None
                    return Start(self._pid(job.worker), job.started_at.timestamp())
                if job.done:
                    return None
                await asyncio.sleep(POLL_S)
        return None

    def _pid(self, worker_id: str | None) -> int:
        """The daemon a worker id names: servers.workers names them bench-<i>."""
        index = int((worker_id or "").split("-")[1])
        return self.pids[index]

    async def _cancel_held(self) -> None:
        async with AsyncClient(self.url, self.user) as client:
            for job_id in self.held.values():
                job = await client.get(job_id)
                if not job.done:
                    await client.cancel(job_id)
        self.held.clear()
