"""Benchmark: what an idle fleet costs one broker process (issue 19, point 2). Thousands of
workers park their polls on one `garage broker run`; what does it hold and burn while
they wait, and how fast does an enqueue reach one of them?

Starts a `redis-server` on a free loopback port and one `garage broker run` on it, makes a
worker key per simulated worker with the admin key (the broker allows 64 live workers per
worker key), and starts `bench/pollers.py` processes, each running its share of the
workers: each long-polls with `wait_s` 25 as `garage worker run` does, and polls again as
soon as the answer comes. First polls are spread over one `wait_s` (`--ramp-per-s`), as
the re-polls that follow will be. Once the fleet view lists every worker and `--settle-s`
more went by:

  idle      over `--window-s`: the broker's RSS and CPU, redis-server's CPU (psutil), the
            Redis connections (`INFO clients`, less this bench's own), Redis commands, and
            the polls answered in the window (their `wait_s` ran out; each polls again).
  scrape    one `GET /metrics` and one `GET /v1/workers` (what Prometheus and the fleet
            page ask for), timed.
  enqueue   `--enqueues` jobs submitted one at a time by a user key without quotas, each
            waiting for its end (`Prefer: wait`; the poller that gets it completes it at
            once), on each lane: interactive (a parked poll is handed the job as it is
            created) and batch (the job is queued and its wake wakes one parked poll,
            which claims it). enqueue -> lease runs from just before the submit to the
            poller having read the lease. Every poll answered before its `wait_s` ran out
            is counted against the enqueue it followed: one per enqueue means no herd.

Each run and each size starts a fresh Redis and broker. The open-file limit is raised to
its hard limit first (the broker inherits it); what the broker had is printed.

    .venv/bin/python bench/idle_scale.py                          # 1,000 and 10,000, 3 runs
    .venv/bin/python bench/idle_scale.py --quick --json out.json  # 50 workers, for the tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from peers import machine
from processes import start, stop
from roundtrip import pct, run, spy, summarize
from saturation import Meter, own_frames
from servers import ADMIN_KEY, ROOT, broker, make_keys, redis_server

from garage.broker.store.keys import WORKERS as FLEET
from garage.client import AsyncClient, GarageError
from garage.contract import JobCreate, Lane

MODEL = "idle-model"
POLLERS = Path(__file__).resolve().parent / "pollers.py"
SIZES = (1_000, 10_000)
WORKERS_PER_PROCESS = 2_500
# Issue 19's goals at 10,000 parked workers.
GOALS = {"rss_mb": 1024.0, "cpu_pct": 5.0, "redis_connections": 10, "lease_p50_ms": 5.0}
QUICK = {"sizes": [50], "runs": 1, "window_s": 3.0, "settle_s": 1.0, "enqueues": 20,
         "ramp_per_s": 100.0}  # fmt: skip


@dataclass
class Fleet:
    """The poller processes and where each writes its polls."""

    processes: list[subprocess.Popen[bytes]]
    outputs: list[Path]

    def polls(self) -> tuple[list[tuple[float, float, list[str]]], int, list[str]]:
        """Every poll of every process (sent, answered, job ids), the errors, samples."""
        polls, errors, samples = [], 0, []
        for out in self.outputs:
            document = json.loads(out.read_text())
            polls += [tuple(p) for p in document["polls"]]
            errors += document["errors"]
            samples += document["error_samples"]
        return polls, errors, samples


def raise_open_files() -> tuple[int, int]:
    """The soft open-file limit raised to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def worker_keys(url: str, count: int) -> list[str]:
    """`count` new worker keys, made with the admin key, 4 requests at a time (the broker's
    Redis pool keeps as many connections as were ever busy at once)."""
    sending = asyncio.Semaphore(4)
    async with AsyncClient(url, ADMIN_KEY) as admin:

        async def one(i: int) -> str:
            async with sending:
                return (await admin.create_key("worker", f"sim-{i}")).key

        return list(await asyncio.gather(*(one(i) for i in range(count))))


@contextmanager
def fleet(url: str, keys: Sequence[str], folder: Path, args: argparse.Namespace,
          ramp_per_s: float) -> Iterator[Fleet]:  # fmt: skip
    """The simulated workers, `WORKERS_PER_PROCESS` (or fewer) to a process (at least
    two processes), until the block ends; then stopped (SIGTERM: each writes its polls)."""
    count = max(2, math.ceil(len(keys) / WORKERS_PER_PROCESS))
    share = math.ceil(len(keys) / count)
    processes, outputs = [], []
    try:
        for n in range(count):
            mine = keys[n * share : (n + 1) * share]
            (folder / f"keys-{n}.json").write_text(json.dumps(list(mine)))
            outputs.append(folder / f"polls-{n}.json")
            command = [sys.executable, str(POLLERS), "--url", url, "--keys",
                       str(folder / f"keys-{n}.json"), "--out", str(outputs[-1]), "--first",
                       str(n * share), "--model", MODEL, "--wait-s", f"{args.wait_s:g}",
                       "--ramp-per-s", f"{ramp_per_s / count:g}"]  # fmt: skip
            processes.append(start(command, log=folder / f"pollers-{n}.log", cwd=ROOT))
        yield Fleet(processes, outputs)
    finally:
        stop(processes)


def until_listed(client: redis.Redis, count: int, processes: Sequence[subprocess.Popen[bytes]],
                 limit_s: float) -> tuple[float, int]:  # fmt: skip
    """Waits until the fleet view lists `count` workers (each first poll is written there
    before it parks), or `limit_s`; the seconds it took and how many it lists. Read from
    Redis: at 10,000 workers the broker's own listings take seconds."""
    started = time.monotonic()
    while (listed := client.zcard(FLEET)) < count and time.monotonic() - started < limit_s:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a poller process ended; see pollers-*.log")
        time.sleep(0.5)
    return time.monotonic() - started, listed


def redis_figures(client: redis.Redis) -> dict[str, int]:
    clients, stats = client.info("clients"), client.info("stats")
    return {"connected_clients": int(clients["connected_clients"]),
            "commands": int(stats["total_commands_processed"])}  # fmt: skip


async def health_probe(url: str, seconds: float) -> list[float]:
    """`GET /healthz` every 100 ms for `seconds`; each answer's time (ms). A slow one means
    the broker's event loop was busy: every request waits behind whatever runs."""
    times = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            await http.get("/healthz")
            times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)
    return times


def idle_window(url: str, svc_pid: int, redis_pid: int, client: redis.Redis,
                window_s: float) -> dict:  # fmt: skip
    """The broker and Redis over `window_s` while the polls wait."""
    meter = Meter({"broker": svc_pid, "redis": redis_pid})
    before, redis_before = meter.read(), redis_figures(client)
    started = time.monotonic()
    health = run(health_probe(url, window_s))
    seconds = time.monotonic() - started
    cpu, others = Meter.since(before, meter.read(), seconds)
    redis_after = redis_figures(client)
    connections = [c for c in client.client_list() if int(c["id"]) != client.client_id()]
    return {
        "window": (started, started + seconds),
        "broker_cpu_s": cpu["broker"],
        "broker_cpu_pct": cpu["broker"] / seconds * 100,
        "redis_cpu_pct": cpu["redis"] / seconds * 100,
        "others_cores": others,
        "broker_rss_mb": psutil.Process(svc_pid).memory_info().rss / 2**20,
        # this bench's own connection is the one asking
        "redis_connections": redis_after["connected_clients"] - 1,
        # connections the broker opened at some busier moment and left unused since
        "redis_connections_unused": sum(1 for c in connections if int(c["idle"]) >= window_s),
        "redis_commands": redis_after["commands"] - redis_before["commands"],
        "healthz_ms": health,
    }


async def scrapes(url: str) -> dict[str, float]:
    """Milliseconds for one `/metrics` and one `/v1/workers` (every live worker), and the
    polls parked as the metrics were read."""
    timed = {}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for name, path in (("metrics_ms", "/metrics"), ("workers_ms", "/v1/workers")):
            started = time.perf_counter()
            reply = await http.get(path, headers=headers)
            timed[name] = (time.perf_counter() - started) * 1000
            assert reply.status_code == 200, reply.text[:200]
            if found := re.search(r"^garage_broker_polls_parked (\S+)$", reply.text, re.M):
                timed["parked"] = float(found.group(1))
    return timed


async def enqueues(
    url: str, user_key: str, lane: Lane, count: int, budget_s: float
) -> tuple[list[tuple[str, float]], list[str]]:
    """`count` jobs submitted one after another, each waited for (up to 10 s), or as many
    as `budget_s` allows: (job id, sent at) of each, and the submits the broker refused
    (an overloaded broker answers 503). A job that did not end in time is left to
    `leases` to count."""
    spec = JobCreate(model=MODEL, request={"messages": [{"role": "user", "content": "hi"}]},
                     lane=lane)  # fmt: skip
    sent, refused = [], []
    deadline = time.monotonic() + budget_s
    async with AsyncClient(url, user_key) as client:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)  # the poller that had the last one parks again
            at = time.monotonic()
            try:
                handle = await client.submit_spec(spec, wait_s=10)
            except GarageError as exc:
                refused.append(f"{type(exc).__name__}: {exc}")
                continue
            sent.append((handle.id, at))
    return sent, refused


Poll = tuple[float, float, list[str]]  # sent, answered (time.monotonic()), job ids leased


def leases(sent: dict[Lane, list[tuple[str, float]]], polls: list[Poll], wait_s: float,
           end: float) -> dict[str, Any]:  # fmt: skip
    """Per lane: enqueue -> lease times (ms), and how many polls were answered early (with
    a lease, or woken with nothing: before their `wait_s` ran out) between each enqueue
    and the next one."""
    got: dict[str, float] = {}
    twice = 0
    for _, answered, ids in polls:
        for job_id in ids:
            twice += job_id in got
            got.setdefault(job_id, answered)
    every = sorted((at, lane, job_id) for lane, jobs in sent.items() for job_id, at in jobs)
    early = sorted(answered for s, answered, ids in polls if ids or answered - s < wait_s - 1)
    bounds = [at for at, _, _ in every] + [end]
    figures: dict[str, Any] = {"leased_twice": twice, "never_leased": 0}
    for lane in sent:
        figures |= {f"{lane.value}_lease_ms": [], f"{lane.value}_answered_per_enqueue": [],
                    f"{lane.value}_enqueues": 0}  # fmt: skip
    for (lo, lane, job_id), hi in zip(every, bounds[1:], strict=True):
        if job_id not in got:
            figures["never_leased"] += 1
            continue
        figures[f"{lane.value}_lease_ms"].append((got[job_id] - lo) * 1000)
        figures[f"{lane.value}_enqueues"] += 1
        answered = sum(1 for t in early if lo <= t < hi)
        figures[f"{lane.value}_answered_per_enqueue"].append(answered)
    return figures


def one_size(size: int, args: argparse.Namespace, number: int) -> dict[str, Any]:
    with ExitStack() as stack:
        if args.logs:
            folder = args.logs / f"run-{number}-{size}"
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis_url = stack.enter_context(redis_server(folder))
        svc = stack.enter_context(broker(f"{redis_url}/0", folder / "broker.log"))
        client = stack.enter_context(redis.Redis.from_url(redis_url, single_connection_client=True))
        redis_pid = int(client.info("server")["process_id"])
        open_files = psutil.Process(svc.pid).rlimit(psutil.RLIMIT_NOFILE)
        rss_before = psutil.Process(svc.pid).memory_info().rss / 2**20
        user_key, _ = run(make_keys(svc.url))
        began = time.monotonic()
        keys = run(worker_keys(svc.url, size))
        keys_s = time.monotonic() - began
        connections_before = redis_figures(client)["connected_clients"] - 1
        ramp_per_s = args.ramp_per_s or size / args.wait_s
        pollers = stack.enter_context(fleet(svc.url, keys, folder, args, ramp_per_s))
        # an overloaded broker may never list them all: then it is measured as it is
        limit_s = size / ramp_per_s + 30
        ramp_s, listed = until_listed(client, size, pollers.processes, limit_s)
        time.sleep(args.settle_s)
        spies = []
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            raw = args.profile / f"broker-{size}-{number}.raw"
            spies.append(spy(svc.pid, raw, args.window_s))
        idle = idle_window(svc.url, svc.pid, redis_pid, client, args.window_s)
        for process in spies:
            process.wait()
        scraped = run(scrapes(svc.url))
        sent, refused = {}, []
        for lane in (Lane.interactive, Lane.batch):
            found = enqueues(svc.url, user_key, lane, args.enqueues, args.enqueue_budget_s)
            sent[lane], lost = run(found)
            refused += lost
        time.sleep(1.0)  # any poll a late wake would answer
        end = time.monotonic()
        rss_after = psutil.Process(svc.pid).memory_info().rss / 2**20
        stop(pollers.processes)
        polls, errors, samples = pollers.polls()
    lo, hi = idle.pop("window")
    in_window = sum(1 for _, answered, _ in polls if lo <= answered < hi)
    return {
        "workers": size,
        "broker_open_files": list(open_files),
        "keys_s": keys_s,
        "ramp_s": ramp_s,
        "listed": listed,
        "redis_connections_before": connections_before,
        "broker_rss_start_mb": rss_before,
        **idle,
        "polls_answered_in_window": in_window,
        "broker_cpu_us_per_poll": idle["broker_cpu_s"] / max(in_window, 1) * 1e6,
        "redis_commands_per_poll": idle["redis_commands"] / max(in_window, 1),
        "broker_rss_end_mb": rss_after,
        **scraped,
        **leases(sent, polls, args.wait_s, end),
        # how long past its wait_s an empty poll was answered: 0 while the broker keeps up
        "poll_overrun_ms": [
            (answered - sent - args.wait_s) * 1000 for sent, answered, ids in polls if not ids
        ],
        "submits_refused": len(refused),
        "submit_refusal_samples": refused[:5],
        "poll_errors": errors,
        "poll_error_samples": samples,
    }


LATENCY = ("p50", 0.5), ("p90", 0.9), ("p99", 0.99)


def summary(figures: dict[str, Any]) -> dict[str, float]:
    """One run's figures as single numbers."""
    flat: dict[str, float] = {}
    for name, value in figures.items():
        if isinstance(value, (int, float)):
            flat[name] = float(value)
        elif name.endswith("_ms") and isinstance(value, list):
            nothing = float("nan")  # none measured (a quick run: no poll's wait ran out)
            for label, q in LATENCY:
                flat[f"{name[:-3]}_{label}_ms"] = pct(value, q) if value else nothing
            flat[f"{name[:-3]}_max_ms"] = max(value, default=nothing)
        elif name.endswith("_answered_per_enqueue"):
            flat[f"{name}_max"] = float(max(value, default=float("nan")))
            flat[f"{name}_mean"] = statistics.fmean(value) if value else float("nan")
    return flat


def spread(runs: list[dict[str, float]], name: str) -> str:
    values = [r[name] for r in runs]
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.4g}"
    return f"{middle:.4g} ({min(values):.4g}-{max(values):.4g})"


ROWS = (
    ("workers in the fleet view as the window began", "listed", None, None),
    ("broker RSS, MB", "broker_rss_mb", "rss_mb", "under"),
    ("broker CPU, % of a core", "broker_cpu_pct", "cpu_pct", "under"),
    ("redis-server CPU, % of a core", "redis_cpu_pct", None, None),
    ("Redis connections (less the bench's)", "redis_connections", "redis_connections", "at most"),
    ("... before the first poll (its own two, and the pool's after the keys were made)",
     "redis_connections_before", None, None),
    ("... unused through the window", "redis_connections_unused", None, None),
    ("GET /healthz every 100 ms in the window: p50 / p99 / most, ms",
     ("healthz_p50_ms", "healthz_p99_ms", "healthz_max_ms"), None, None),
    ("polls answered in the window (wait_s ran out)", "polls_answered_in_window", None, None),
    ("an empty poll answered after its wait_s: p50 / p99 / most, ms",
     ("poll_overrun_p50_ms", "poll_overrun_p99_ms", "poll_overrun_max_ms"), None, None),
    ("broker CPU per answered poll, µs", "broker_cpu_us_per_poll", None, None),
    ("Redis commands per answered poll", "redis_commands_per_poll", None, None),
    ("enqueue -> lease, interactive (hand-off), p50 ms", "interactive_lease_p50_ms",
     "lease_p50_ms", "under"),
    ("... p90 / p99 ms", ("interactive_lease_p90_ms", "interactive_lease_p99_ms"), None, None),
    ("enqueue -> lease, batch lane (wake + claim), p50 ms", "batch_lease_p50_ms", None, None),
    ("... p90 / p99 ms", ("batch_lease_p90_ms", "batch_lease_p99_ms"), None, None),
    ("polls answered per enqueue, interactive: mean / most",
     ("interactive_answered_per_enqueue_mean", "interactive_answered_per_enqueue_max"), None,
     None),
    ("polls answered per enqueue, batch: mean / most",
     ("batch_answered_per_enqueue_mean", "batch_answered_per_enqueue_max"), None, None),
    ("polls parked after the window (the rest were being answered)", "parked", None, None),
    ("GET /metrics, ms", "metrics_ms", None, None),
    ("GET /v1/workers, ms", "workers_ms", None, None),
    ("jobs never leased / leased twice", ("never_leased", "leased_twice"), None, None),
    ("submits refused (503 from an overloaded broker)", "submits_refused", None, None),
    ("polls and completes tried again (the daemon's backoff)", "poll_errors", None, None),
    ("enqueues timed, interactive / batch", ("interactive_enqueues", "batch_enqueues"),
     None, None),
    ("machine's other work, cores", "others_cores", None, None),
)  # fmt: skip


def table(by_size: dict[int, list[dict[str, float]]]) -> str:
    sizes = sorted(by_size)
    lines = ["| figure | " + " | ".join(f"{s:,} workers" for s in sizes) + " | goal |",
             "| --- | " + " | ".join("---" for _ in sizes) + " | --- |"]  # fmt: skip
    for label, names, goal, how in ROWS:
        cells = []
        for size in sizes:
            runs = by_size[size]
            if isinstance(names, tuple):
                cells.append(" / ".join(spread(runs, n) for n in names))
            else:
                cells.append(spread(runs, names))
        wanted = ""
        if goal is not None:
            limit = GOALS[goal]
            value = statistics.median(r[names] for r in by_size[sizes[-1]])
            met = value <= limit if how == "at most" else value < limit
            wanted = f"{how} {limit:g} at {sizes[-1]:,}: {'met' if met else 'NOT met'}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {wanted} |")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=list(SIZES), help="simulated workers, comma-separated")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="whole runs of every size")
    parser.add_argument("--wait-s", type=float, default=25.0, help="each poll's wait_s")
    parser.add_argument("--ramp-per-s", type=float,
                        help="first polls a second (default: workers / wait_s, so the first "
                        "polls are spread over one wait, as the re-polls that follow)")  # fmt: skip
    parser.add_argument("--settle-s", type=float, default=5.0,
                        help="after every poll parked, before the window")  # fmt: skip
    parser.add_argument("--window-s", type=float, default=30.0, help="the idle window")
    parser.add_argument("--enqueues", type=int, default=300, help="jobs timed on each lane")
    parser.add_argument("--enqueue-budget-s", type=float, default=90.0,
                        help="stop a lane's enqueues after this long")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="50 workers, short windows")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    parser.add_argument("--profile", type=Path, help="py-spy records of the broker's idle "
                        "window go to this folder")  # fmt: skip
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**QUICK)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM (a timeout, kill) unwinds like Ctrl-C, so every process started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard = raise_open_files()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        about = machine.describe(redis_url)
    print(f"machine: {machine.line(about)}", flush=True)
    print(f"open files: this process {soft} (hard {hard}); sizes {args.sizes}, runs "
          f"{args.runs}, wait_s {args.wait_s:g}, window {args.window_s:g} s, "
          f"{args.enqueues} enqueues a lane", flush=True)  # fmt: skip
    raw: dict[int, list[dict[str, Any]]] = {size: [] for size in args.sizes}
    for number in range(1, args.runs + 1):
        for size in args.sizes:
            figures = one_size(size, args, number)
            raw[size].append(figures)
            write(args.json, about, args, raw)
            flat = summary(figures)
            print(f"run {number}, {size} workers: broker RSS {flat['broker_rss_mb']:.0f} MB, "
                  f"CPU {flat['broker_cpu_pct']:.1f} % (redis {flat['redis_cpu_pct']:.1f} %), "
                  f"{flat['redis_connections']:.0f} Redis connections, lease p50 "
                  f"{flat['interactive_lease_p50_ms']:.2f} ms (batch "
                  f"{flat['batch_lease_p50_ms']:.2f}), answered per enqueue at most "
                  f"{flat['interactive_answered_per_enqueue_max']:.0f} / "
                  f"{flat['batch_answered_per_enqueue_max']:.0f}; broker open files "
                  f"{figures['broker_open_files'][0]}; keys {figures['keys_s']:.0f} s, ramp "
                  f"{figures['ramp_s']:.0f} s; retries {figures['poll_errors']}",
                  flush=True)  # fmt: skip
    print()
    print(f"{args.runs} run(s); median (lowest-highest)")
    print(table({size: [summary(f) for f in runs] for size, runs in raw.items()}))
    for record in sorted(args.profile.glob("broker-*.raw")) if args.profile else ():
        print(f"where the broker's samples went (self), {record.name}:")
        print(summarize(record, top=15))
        print("...by garage's own innermost frame on the stack:")
        print(own_frames(record))
    return 0


def write(path: Path | None, about: dict[str, Any], args: argparse.Namespace,
          raw: dict[int, list[dict[str, Any]]]) -> None:  # fmt: skip
    """Every figure so far, to `path` (after each size of each run: a long run that is cut
    short keeps what it measured)."""
    if path is not None:
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        runs = {str(size): runs for size, runs in raw.items()}
        path.write_text(json.dumps({"machine": about, "options": options, "runs": runs}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
