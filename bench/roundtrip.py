"""Benchmark: job round-trip latency and throughput through a real broker on real Redis,
and the same for Celery in the same run (`--peer celery`).

Starts its own `redis-server` (on a free port) and `garage broker run` (a subprocess),
then measures, over HTTP on loopback:

  latency     one job at a time: submit -> leased by a parked poll -> completed ->
              result read by the submitter, who waits in the submit itself
              (`Prefer: wait`, as `AsyncClient.run` does).
  throughput  N batch jobs submitted (64 in flight), then drained by 2 polling workers
              that lease up to --slots jobs per poll and complete each with one request.

The submitter and the workers run in this one process (uvloop). `--client` picks what
sends their requests: `garage` (garage's own `AsyncClient` and `WorkerAPI`, what users
and the worker daemon run; `GARAGE_HTTP_ENGINE` picks their HTTP engine), or bare
`aiohttp` (hand-built JSON through a general-purpose HTTP client, no client library).

With `--peer celery` the latency is measured in alternating blocks, garage then Celery
(`celery_peer.py`, solo pool, on the same redis-server), `--blocks` times each, so both
see the same machine; then both throughputs.

Run by hand:  python bench/roundtrip.py --peer celery
Results go to stdout as a small report; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
from servers import ADMIN_KEY, broker, redis_server

from garage.client import AsyncClient, WorkerAPI
from garage.contract import CompleteReport, JobCreate, Lane, PollRequest

MODEL = "bench"
REQUEST = {"messages": [{"role": "user", "content": "hi"}]}
RESULT = {"ok": True}
WARMUP = 50


class Side(Protocol):
    """The four calls a round trip makes, by one HTTP client or another."""

    async def run(self) -> str: ...  # submit and wait in one request; the final status
    async def submit(self) -> None: ...  # a batch job
    async def poll(self, worker_id: str, slots: int, wait_s: float) -> list[tuple[str, str]]: ...
    async def complete(self, job_id: str, token: str) -> None: ...
    async def aclose(self) -> None: ...


class GarageSide:
    """garage's client SDK and the worker's API client, as users and workers run them."""

    def __init__(self, url: str, user_key: str, worker_key: str) -> None:
        self.client = AsyncClient(url, user_key)
        self.worker = WorkerAPI(url, worker_key)

    async def run(self) -> str:
        return (await self.client.run(MODEL, REQUEST["messages"], timeout_s=10)).status.value

    async def submit(self) -> None:
        await self.client.submit_spec(JobCreate(model=MODEL, request=REQUEST, lane=Lane.batch))

    async def poll(self, worker_id: str, slots: int, wait_s: float) -> list[tuple[str, str]]:
        request = PollRequest(
            worker_id=worker_id, models=[MODEL], slots_free=slots, slots_total=slots, wait_s=wait_s
        )
        reply = await self.worker.poll(request)
        return [(lease.job_id, lease.lease_token) for lease in reply.leases]

    async def complete(self, job_id: str, token: str) -> None:
        await self.worker.complete(job_id, CompleteReport(lease_token=token, result=RESULT))

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.worker.aclose()


class AiohttpSide:
    """Bare aiohttp with hand-built JSON: the protocol through a general-purpose client."""

    def __init__(self, url: str, user_key: str, worker_key: str) -> None:
        import aiohttp

        self.url = url
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        self.user = {"Authorization": f"Bearer {user_key}", "Content-Type": "application/json"}
        self.worker = {**self.user, "Authorization": f"Bearer {worker_key}"}

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        async with self.session.post(self.url + path, data=json.dumps(body), headers=headers) as r:
            assert r.status < 300, await r.text()
            return json.loads(await r.read())

    async def run(self) -> str:
        body = {"model": MODEL, "request": REQUEST}
        job = await self._post("/v1/jobs", body, {**self.user, "Prefer": "wait=10"})
        return job["status"]

    async def submit(self) -> None:
        body = {"model": MODEL, "request": REQUEST, "lane": "batch"}
        await self._post("/v1/jobs", body, self.user)

    async def poll(self, worker_id: str, slots: int, wait_s: float) -> list[tuple[str, str]]:
        body = {"worker_id": worker_id, "models": [MODEL], "slots_free": slots,
                "slots_total": slots, "wait_s": wait_s}  # fmt: skip
        reply = await self._post("/v1/worker/poll", body, self.worker)
        return [(lease["job_id"], lease["lease_token"]) for lease in reply["leases"]]

    async def complete(self, job_id: str, token: str) -> None:
        body = {"lease_token": token, "result": RESULT}
        await self._post(f"/v1/worker/jobs/{job_id}/complete", body, self.worker)

    async def aclose(self) -> None:
        await self.session.close()


SIDES: dict[str, Callable[[str, str, str], Side]] = {"garage": GarageSide, "aiohttp": AiohttpSide}


async def make_keys(url: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=url) as http:
        keys = []
        for role in ("user", "worker"):
            reply = await http.post(
                "/v1/admin/keys",
                json={"role": role, "name": f"bench-{role}"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            keys.append(reply.json()["key"])
    return keys[0], keys[1]


async def latency(side: Side, rounds: int) -> list[float]:
    stop = False

    async def work() -> None:
        while not stop:
            for job_id, token in await side.poll("lat", 1, 30):
                await side.complete(job_id, token)

    worker = asyncio.create_task(work())
    samples = []
    for i in range(rounds + WARMUP):
        await asyncio.sleep(0.002)  # let the worker's poll park again
        start = time.perf_counter()
        status = await side.run()
        elapsed = time.perf_counter() - start
        assert status == "succeeded", status
        if i >= WARMUP:
            samples.append(elapsed * 1000)
    stop = True
    await side.submit()  # a job for the parked poll, so it returns
    await worker
    return samples


async def throughput(side: Side, jobs: int, slots: int) -> dict[str, float]:
    sem = asyncio.Semaphore(64)

    async def submit_one() -> None:
        async with sem:
            await side.submit()

    start = time.perf_counter()
    await asyncio.gather(*(submit_one() for _ in range(jobs)))
    submitted = time.perf_counter()
    done = 0

    async def rig(name: str) -> None:
        nonlocal done
        while done < jobs:
            leases = await side.poll(name, slots, 0)

            async def finish(job_id: str, token: str) -> None:
                nonlocal done
                await side.complete(job_id, token)
                done += 1

            await asyncio.gather(*(finish(*lease) for lease in leases))

    await asyncio.gather(rig("rig-1"), rig("rig-2"))
    drained = time.perf_counter()
    return {
        "submit_per_s": jobs / (submitted - start),
        "drain_per_s": jobs / (drained - submitted),
        "end_to_end_per_s": jobs / (drained - start),
    }


async def garage_latency(url: str, keys: tuple[str, str], client: str, rounds: int) -> list[float]:
    side = SIDES[client](url, *keys)
    try:
        return await latency(side, rounds)
    finally:
        await side.aclose()


async def garage_throughput(
    url: str, keys: tuple[str, str], client: str, jobs: int, slots: int
) -> dict[str, float]:
    side = SIDES[client](url, *keys)
    try:
        return await throughput(side, jobs, slots)
    finally:
        await side.aclose()


def run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe(samples: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples):.2f}  p90 {pct(samples, 0.9):.2f}  "
        f"p99 {pct(samples, 0.99):.2f}  mean {statistics.fmean(samples):.2f}"
    )


def rates(figures: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.0f}" for k, v in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the throughput run")
    parser.add_argument("--latency-rounds", type=int, default=2000, help="round trips timed")
    parser.add_argument("--slots", type=int, default=16, help="jobs a worker leases per poll")
    parser.add_argument("--client", choices=sorted(SIDES), default="garage")
    parser.add_argument("--peer", choices=["none", "celery"], default="none")
    parser.add_argument("--blocks", type=int, default=4, help="alternations with the peer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        with broker(f"{redis_url}/0", Path(tmp) / "broker.log") as url:
            keys = run(make_keys(url))
            if args.peer == "none":
                samples = run(garage_latency(url, keys, args.client, args.latency_rounds))
                print(f"latency, garage ({args.client}), {len(samples)} jobs (ms): "
                      + describe(samples))  # fmt: skip
            else:
                compare_latency(url, keys, redis_url, Path(tmp), args)
            figures = run(garage_throughput(url, keys, args.client, args.jobs, args.slots))
            print(f"throughput, garage ({args.client}), {args.jobs} jobs, 2 workers x "
                  f"{args.slots} slots (jobs/s): {rates(figures)}")  # fmt: skip
        if args.peer == "celery":
            import celery_peer

            celery_peer.configure(redis_url)
            with celery_peer.workers(redis_url, 2, Path(tmp) / "celery.log"):
                figures = celery_peer.throughput(args.jobs)
            print(f"throughput, celery, {args.jobs} jobs, 2 solo workers (jobs/s): "
                  f"{rates(figures)}")  # fmt: skip


def compare_latency(
    url: str, keys: tuple[str, str], redis_url: str, tmp: Path, args: argparse.Namespace
) -> None:
    import celery_peer

    celery_peer.configure(redis_url)
    rounds = max(args.latency_rounds // args.blocks, 1)
    ours: list[float] = []
    theirs: list[float] = []
    with celery_peer.workers(redis_url, 1, tmp / "celery.log"):
        for block in range(args.blocks):
            garage_block = run(garage_latency(url, keys, args.client, rounds))
            celery_block = celery_peer.latency(rounds)
            ours += garage_block
            theirs += celery_block
            print(f"block {block + 1}: p50 garage {statistics.median(garage_block):.2f} ms, "
                  f"celery {statistics.median(celery_block):.2f} ms")  # fmt: skip
    print(f"latency, garage ({args.client}), {len(ours)} jobs (ms): {describe(ours)}")
    print(f"latency, celery (solo pool), {len(theirs)} jobs (ms): {describe(theirs)}")


if __name__ == "__main__":
    main()
