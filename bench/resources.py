"""What load costs a broker (issue 16, resource bounds): memory per queued job in Redis and
in the broker, and whether `/healthz` still answers in milliseconds while thousands of
worker polls are parked and hundreds of event streams are open.

Drives `garage broker run` on its own redis-server through the public client and plain
HTTP, as users and rigs would:

    python bench/resources.py                       # 100,000 queued jobs, 2,000 polls, 500 streams
    python bench/resources.py --jobs 20000 --runs 1  # quicker

Each run starts a fresh Redis and broker. Jobs are queued through the Batch API (the way
bulk work arrives), for a model no worker serves, so they stay queued; each request is a
chat of about `--request-bytes`. The figures printed are the median and the range over
the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import broker, make_keys, redis_server
from garage.client import AsyncClient

_BATCH_MAX = 50_000
_HEALTH_SAMPLES = 300


def _used_memory(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).info("memory")["used_memory"])


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


async def _queue(url: str, user_key: str, jobs: int, request_bytes: int) -> None:
    filler = "x" * max(0, request_bytes - 100)
    async with AsyncClient(url, user_key, timeout_s=600) as client:
        for start in range(0, jobs, _BATCH_MAX):
            prompts = [f"{i} {filler}" for i in range(start, min(jobs, start + _BATCH_MAX))]
            await client.submit_batch("nobody-serves-this", prompts, wait_for_worker=True)


async def _health_ms(url: str) -> list[float]:
    """`GET /healthz` times, one after another on a kept-alive connection."""
    times = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await http.get("/healthz")
        for _ in range(_HEALTH_SAMPLES):
            started = time.perf_counter()
            reply = await http.get("/healthz")
            times.append((time.perf_counter() - started) * 1000)
            assert reply.status_code == 200
    return times


async def _under_load(url: str, user_key: str, worker_key: str, polls: int, streams: int) -> dict:
    """Parks `polls` worker polls and opens `streams` event streams, then times /healthz."""
    limits = httpx.Limits(max_connections=polls + streams + 10, max_keepalive_connections=0)
    worker = {"Authorization": f"Bearer {worker_key}"}
    user = {"Authorization": f"Bearer {user_key}"}
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        job_ids = []
        for _ in range(streams):
            body = {"model": "streamed-model", "request": chat, "wait_for_worker": True}
            job_ids.append((await http.post("/v1/jobs", json=body, headers=user)).json()["id"])
        opened = asyncio.Event()
        open_count = 0

        async def stream(job_id: str) -> None:
            nonlocal open_count
            async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=user) as reply:
                assert reply.status_code == 200
                open_count += 1
                if open_count == streams:
                    opened.set()
                async for _ in reply.aiter_raw():
                    pass

        async def poll(i: int) -> None:
            body = {"worker_id": f"idle-{i}", "models": ["parked-model"], "slots_free": 1,
                    "slots_total": 1, "wait_s": 60}  # fmt: skip
            await http.post("/v1/worker/poll", json=body, headers=worker)

        tasks = [asyncio.create_task(stream(job_id)) for job_id in job_ids]
        await asyncio.wait_for(opened.wait(), 120)
        tasks += [asyncio.create_task(poll(i)) for i in range(polls)]
        await asyncio.sleep(5)  # every poll sent and parked
        loaded = await _health_ms(url)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"healthz_ms": loaded}


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as folder,
        redis_server(Path(folder)) as redis_url,
        broker(redis_url, Path(folder) / "b.log") as svc,
    ):
        user_key, worker_key = asyncio.run(make_keys(svc.url))
        idle = asyncio.run(_health_ms(svc.url))
        redis_before, rss_before = _used_memory(redis_url), _rss(svc.pid)
        started = time.monotonic()
        asyncio.run(_queue(svc.url, user_key, args.jobs, args.request_bytes))
        queue_s = time.monotonic() - started
        redis_after, rss_after = _used_memory(redis_url), _rss(svc.pid)
        loaded = asyncio.run(_under_load(svc.url, user_key, worker_key, args.polls, args.streams))
        return {
            "queue_s": queue_s,
            "redis_bytes_per_job": (redis_after - redis_before) / args.jobs,
            "broker_rss_bytes_per_job": (rss_after - rss_before) / args.jobs,
            "broker_rss_mb": rss_after / 2**20,
            "healthz_idle_p50_ms": statistics.median(idle),
            "healthz_idle_p99_ms": _p99(idle),
            "healthz_loaded_p50_ms": statistics.median(loaded["healthz_ms"]),
            "healthz_loaded_p99_ms": _p99(loaded["healthz_ms"]),
        }


def _p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--request-bytes", type=int, default=1024)
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(args) for _ in range(args.runs)]
    summary = {
        name: {
            "median": round(statistics.median(r[name] for r in runs), 2),
            "min": round(min(r[name] for r in runs), 2),
            "max": round(max(r[name] for r in runs), 2),
        }
        for name in runs[0]
    }
    print(json.dumps({"jobs": args.jobs, "request_bytes": args.request_bytes,
                      "polls": args.polls, "streams": args.streams, "runs": args.runs,
                      "figures": summary}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
