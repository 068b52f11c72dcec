"""The peer: the same round trip and throughput with Celery on the same kind of Redis.

Celery's client and worker talk to Redis directly (kombu's Redis transport for the queue,
the Redis result backend for results). The worker is `celery worker --pool solo`, one
process per worker, started with the same redis-server URL the garage run uses (another
database number, so the two never see each other's keys).

  latency     `task.delay(body).get()`, one job at a time: queued -> taken by the waiting
              worker -> result stored -> read by the submitter.
  throughput  N tasks queued while the workers consume only a warm-up queue, then both
              start consuming the bench queue at once (`add_consumer`); drained when the
              result backend holds N results.

Also a Celery app: `celery -A celery_peer worker` (run from bench/) finds `app` here; the
worker reads its Redis URL from BENCH_CELERY_REDIS.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from celery import Celery

__all__ = ["app", "chat", "latency", "throughput", "workers"]

_BODY = {"messages": [{"role": "user", "content": "hi"}]}
_WARM_QUEUE = "warm"
_BENCH_QUEUE = "bench"

app = Celery("celery_peer")


def configure(redis_url: str) -> None:
    """The broker in db 1 and results in db 2 of `redis_url` (garage uses db 0)."""
    app.conf.update(
        broker_url=f"{redis_url}/1",
        result_backend=f"{redis_url}/2",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue=_WARM_QUEUE,
    )


if "BENCH_CELERY_REDIS" in os.environ:
    configure(os.environ["BENCH_CELERY_REDIS"])


@app.task(name="chat")
def chat(body: dict) -> dict:
    return {"ok": True}


@contextlib.contextmanager
def workers(redis_url: str, count: int, log: Path) -> Iterator[None]:
    """`count` solo-pool worker processes consuming the warm-up queue."""
    env = {**os.environ, "BENCH_CELERY_REDIS": redis_url}
    handle = log.open("wb")
    command = [sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "--pool",
               "solo", "--queues", _WARM_QUEUE, "--loglevel", "warning", "--without-gossip",
               "--without-mingle", "--without-heartbeat"]  # fmt: skip
    processes = [
        subprocess.Popen(
            [*command, "--hostname", f"peer{i}@%h"],
            cwd=Path(__file__).parent,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5) or []) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(log.read_text())
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        handle.close()


def latency(rounds: int, *, warmup: int = 50) -> list[float]:
    """Milliseconds of each round trip (one worker must be running)."""
    samples = []
    for i in range(rounds + warmup):
        time.sleep(0.002)  # as the garage loop does
        start = time.perf_counter()
        result = chat.apply_async((_BODY,), queue=_WARM_QUEUE).get(timeout=10)
        elapsed = time.perf_counter() - start
        assert result == {"ok": True}, result
        if i >= warmup:
            samples.append(elapsed * 1000)
    return samples


def throughput(jobs: int) -> dict[str, float]:
    """Jobs/s queued, drained and end to end (the workers must be running)."""
    results = app.backend.client
    results.flushdb()
    start = time.perf_counter()
    for _ in range(jobs):
        chat.apply_async((_BODY,), queue=_BENCH_QUEUE)
    submitted = time.perf_counter()
    app.control.add_consumer(_BENCH_QUEUE, reply=True)
    try:
        while results.dbsize() < jobs:
            time.sleep(0.005)
        drained = time.perf_counter()
    finally:
        app.control.cancel_consumer(_BENCH_QUEUE, reply=True)
    return {
        "submit_per_s": jobs / (submitted - start),
        "drain_per_s": jobs / (drained - submitted),
        "end_to_end_per_s": jobs / (drained - start),
    }
