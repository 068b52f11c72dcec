"""Benchmark: a job's round trip and a queue's drain through the processes garage ships,
against Celery's solo pool on the same redis-server in the same run.

Starts its own `redis-server` (a free loopback port, no persistence), one `garage broker
run` on it, and `garage worker run` daemons on the demo backend with no delay (no model:
the job's work is nothing, as Celery's task returns at once), then measures:

  latency     one job at a time through the public client: `AsyncClient.run` (a submit
              that waits for the end) -> the broker hands it to the daemon's parked poll
              -> the daemon runs it and completes it -> the submit answers. One daemon
              (8 slots). Celery: `task.apply_async().get()` with one solo-pool worker.
              The two alternate in blocks (`--blocks`), so both see the same minutes.
  throughput  N jobs queued first (batch lane, 64 submits in flight; Celery: apply_async
              in a loop), then two daemons (16 slots each) drain them; the drain is timed
              from the first lease to the last result by the jobs' own timestamps (Celery:
              from its two solo workers starting to consume to the last result stored).

`--profile DIR` records the daemon and the broker with py-spy during the latency blocks
and prints where their CPU goes. Results go to stdout; docs/benchmarks.md records them.

Run by hand:  .venv/bin/python bench/roundtrip.py --peer celery
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from servers import broker, make_keys, redis_server, workers

from garage.client import AsyncClient
from garage.contract import JobCreate, Lane

MODEL = "garage-demo"
T = TypeVar("T")
_PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
DEMO = ["--backend", "demo", "--demo-tokens-per-s", "0"]
WARMUP = 50


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def latency(
    url: str, key: str, rounds: int, *, warmup: int = WARMUP, budget_s: float | None = None
) -> list[float]:
    """Milliseconds of each round trip, after `warmup` untimed ones; timed ones stop early
    once `budget_s` seconds have gone by (bench/peers_run.py gives every peer the same)."""
    samples = []
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    async with AsyncClient(url, key) as client:
        for i in range(rounds + warmup):
            if deadline is not None and i > warmup and time.monotonic() > deadline:
                break
            await asyncio.sleep(0.002)  # the daemon's poll parks again, as Celery's loop does
            start = time.perf_counter()
            job = await client.run(MODEL, "hi", timeout_s=10)
            elapsed = time.perf_counter() - start
            assert job.status.value == "succeeded", job
            if i >= warmup:
                samples.append(elapsed * 1000)
    return samples


async def queue(url: str, key: str, jobs: int) -> tuple[list[str], float]:
    """Queues `jobs` batch-lane jobs; their ids, and jobs/s queued."""
    spec = JobCreate(model=MODEL, request={"messages": [{"role": "user", "content": "hi"}]},
                     lane=Lane.batch)  # fmt: skip
    ids: list[str] = []
    sending = asyncio.Semaphore(64)
    async with AsyncClient(url, key) as client:

        async def one() -> None:
            async with sending:
                ids.append((await client.submit_spec(spec)).id)

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(jobs)))
        return ids, jobs / (time.perf_counter() - start)


async def drained(url: str, key: str, ids: list[str]) -> float:
    """Waits for every job to end; jobs/s from the first lease to the last result."""
    async with AsyncClient(url, key) as client:
        await client.wait(ids[-1], timeout_s=600)
        first, last, statuses = None, None, Counter[str]()
        after, wanted = None, set(ids)
        while True:
            page = await client.list(limit=100, after=after)
            for job in page.data:
                if job.id not in wanted:
                    continue  # the latency run's
                if job.status.value == "queued" or job.status.value == "running":
                    await client.wait(job.id, timeout_s=600)
                    job = await client.get(job.id)
                statuses[job.status.value] += 1
                assert job.started_at and job.finished_at
                first = min(first or job.started_at, job.started_at)
                last = max(last or job.finished_at, job.finished_at)
            if not page.has_more:
                break
            after = page.last_id
    assert statuses == {"succeeded": len(ids)}, statuses
    assert first is not None and last is not None
    return len(ids) / max((last - first).total_seconds(), 1e-3)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe(samples: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples):.2f}  p90 {pct(samples, 0.9):.2f}  "
        f"p99 {pct(samples, 0.99):.2f}  mean {statistics.fmean(samples):.2f}"
    )


def spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [_PY_SPY, "record", "--rate", "200", "--duration", str(max(1, int(seconds))),
         "--format", "raw", "--output", str(out), "--pid", str(pid), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarize(raw: Path, top: int = 12) -> str:
    """The functions a py-spy raw record spent most samples in (self time)."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    return "\n".join(f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs in the throughput run")
    parser.add_argument("--rounds", type=int, default=2000, help="round trips timed, in all")
    parser.add_argument("--blocks", type=int, default=8, help="alternations with the peer")
    parser.add_argument("--peer", choices=["none", "celery"], default="celery")
    parser.add_argument("--profile", type=Path, help="py-spy records go to this folder")
    args = parser.parse_args()
    rounds = max(args.rounds // args.blocks, 1)
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        folder = Path(tmp)
        with broker(f"{redis_url}/0", folder / "broker.log") as service:
            url = service.url
            user, worker = run(make_keys(url))
            ours: list[float] = []
            theirs: list[float] = []
            with workers(url, worker, 1, folder, [*DEMO, "--slots", "8"]) as [daemon]:
                peer = _celery(redis_url, folder, 1) if args.peer == "celery" else None
                with peer or _nothing():
                    spies = _spies(args.profile, service.pid, daemon.pid, args.blocks * rounds)
                    processes = {"broker": service.pid, "daemon": daemon.pid,
                                 "client (this process)": os.getpid()}  # fmt: skip
                    cpu = Counter[str]()
                    for block in range(args.blocks):
                        before = {name: cpu_s(pid) for name, pid in processes.items()}
                        mine = run(latency(url, user, rounds))
                        for name, pid in processes.items():
                            cpu[name] += cpu_s(pid) - before[name]
                        ours += mine
                        line = f"block {block + 1}: garage p50 {statistics.median(mine):.2f} ms"
                        if peer is not None:
                            import celery_peer

                            other = celery_peer.latency(rounds, warmup=WARMUP)
                            theirs += other
                            line += f", celery {statistics.median(other):.2f} ms"
                        print(line, flush=True)
                    for process in spies:
                        process.wait()
            print(f"latency, garage (garage worker run), {len(ours)} jobs (ms): {describe(ours)}")
            timed = args.blocks * (rounds + WARMUP)
            shares = [f"{name} {seconds / timed * 1e6:.0f} us" for name, seconds in cpu.items()]
            print("CPU per round trip: " + ", ".join(shares))
            if theirs:
                print(f"latency, celery (solo pool), {len(theirs)} jobs (ms): {describe(theirs)}")
                ratio = statistics.median(ours) / statistics.median(theirs)
                print(f"latency p50 ratio garage / celery: {ratio:.2f}")
            if args.profile:
                for name in ("worker", "broker"):
                    print(f"where the {name}'s samples went (self):")
                    print(summarize(args.profile / f"{name}.raw"))
            ids, queued = run(queue(url, user, args.jobs))
            with workers(url, worker, 2, folder, [*DEMO, "--slots", "16"]):
                rate = run(drained(url, user, ids))
            print(f"throughput, garage, {args.jobs} jobs, 2 daemons x 16 slots: queued "
                  f"{queued:.0f} jobs/s, drained {rate:.0f} jobs/s")  # fmt: skip
        if args.peer == "celery":
            import celery_peer

            with _celery(redis_url, folder, 2):
                figures = celery_peer.throughput(args.jobs)
            print(f"throughput, celery, {args.jobs} jobs, 2 solo workers: queued "
                  f"{figures['submit_per_s']:.0f} jobs/s, drained {figures['drain_per_s']:.0f} "
                  f"jobs/s")  # fmt: skip


def _celery(redis_url: str, folder: Path, count: int) -> AbstractContextManager[None]:
    import celery_peer

    celery_peer.configure(redis_url)
    return celery_peer.workers(redis_url, count, folder / "celery.log")


def _nothing() -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def _spies(folder: Path | None, broker_pid: int, daemon_pid: int, rounds: int) -> list:
    if folder is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    seconds = rounds * 0.006  # about as long as the blocks
    return [spy(daemon_pid, folder / "worker.raw", seconds),
            spy(broker_pid, folder / "broker.raw", seconds)]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
