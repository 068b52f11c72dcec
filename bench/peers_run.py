"""Benchmark: garage and its peers (Celery with the solo and the prefork pool, RQ, arq with
its default poll delay and with 0.01 s, dramatiq) on one redis-server, one after another,
each on its own Redis database, each with two worker processes and a no-op job.

For each peer (`bench/peers/<peer>.py`), with its default settings:

  latency     one job at a time: submitted, then its result read through the peer's own
              mechanism; `--rounds` timed after `--warmup`, or as many as fit in
              `--latency-budget-s`; p50 / p90 / p99.
  throughput  `--jobs` no-op jobs queued while no worker runs; then the two workers start
              and drain them. jobs/s = jobs / (last job's end - first job's start), both
              from the jobs' own records: garage's `started_at` / `finished_at` (broker
              time); for the others, the time.time() each job returns (a no-op's start is
              its end). The workers' start-up is outside the clock.
  recovery    a job of `--job-s` seconds on two fresh idle workers; half-way through, the
              worker holding it is killed (SIGKILL to all its processes; for Celery's
              prefork pool and RQ, also the pool process / work horse alone); seconds
              from the kill until the job starts again, waiting at most `--limit-s`.
              Then again with each peer's tuned redelivery settings.

The whole set runs `--runs` times; the tables give the median and the spread (lowest to
highest run) of each figure. Everything raw goes to `--out`/peers.json, with latency.png,
throughput.png and recovery.png. docs/peers.md says what each peer runs with.

    .venv/bin/python bench/peers_run.py --quick            # a smoke run, under a minute
    .venv/bin/python bench/peers_run.py --runs 3 --out docs/peers
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from peers import charts, machine, recovery, report
from peers.base import WORKER, Peer
from servers import redis_server

QUICK = {"jobs": 50, "rounds": 10, "warmup": 2, "latency_budget_s": 1.5, "job_s": 0.5,
         "limit_s": 1.0}  # fmt: skip


def all_peers() -> list[tuple[Peer, int]]:
    """Every peer, with its Redis database number."""
    from peers.arq import ArqPeer
    from peers.celery import CeleryPeer
    from peers.dramatiq import DramatiqPeer
    from peers.garage import GaragePeer
    from peers.rq import RQPeer

    return [
        (GaragePeer(), 0),
        (CeleryPeer("solo"), 1),
        (CeleryPeer("prefork"), 2),
        (RQPeer(), 3),
        (ArqPeer(), 4),
        (ArqPeer(poll_delay_s=0.01), 5),
        (DramatiqPeer(), 6),
    ]


def measure(peer: Peer, db: int, redis_url: str, folder: Path, args: argparse.Namespace) -> dict:
    """One peer's figures: defaults, then tuned (--quick: the kill scenario only tuned,
    only the worker killed)."""
    targets = peer.kill_targets if not args.quick else (WORKER,)
    figures: dict[str, Any] = {"recovery": []}
    for mode in ("defaults", "tuned"):
        logs = folder / mode
        logs.mkdir(parents=True, exist_ok=True)
        with peer.session(redis_url, db, logs, tuned=mode == "tuned") as session:
            if mode == "defaults":
                queued = session.enqueue(args.jobs)
                with session.workers():
                    drain = session.drained(queued)
                    samples = session.round_trips(
                        args.rounds, warmup=args.warmup, budget_s=args.latency_budget_s
                    )
                figures |= {"latency_ms": samples, "queued_per_s": queued.per_s,
                            "drain": {**asdict(drain), "per_s": drain.per_s}}  # fmt: skip
                if args.quick:
                    continue
            for target in targets:
                with session.workers(for_kill=True) as pids:
                    found = recovery.measure(
                        session, pids, target, job_s=args.job_s, limit_s=args.limit_s
                    )
                figures["recovery"].append({"mode": mode, **asdict(found)})
    return figures


def summary_line(name: str, figures: dict[str, Any]) -> str:
    latency = report.latency_figures(figures["latency_ms"])
    recoveries = []
    for found in figures["recovery"]:
        seconds = found["seconds"]
        text = f"{seconds:.2f} s" if seconds is not None else f"none in {found['limit_s']:g} s"
        recoveries.append(f"{found['mode']}/{found['target']} {text}")
    return (
        f"{name}: latency p50 {latency['p50']:.2f} / p90 {latency['p90']:.2f} / p99 "
        f"{latency['p99']:.2f} ms ({latency['n']} rounds); drained "
        f"{figures['drain']['per_s']:.0f} jobs/s, queued {figures['queued_per_s']:.0f} "
        f"jobs/s; recovery " + ", ".join(recoveries)
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small N and R, short limits; checks that it all runs, "
                             "measures nothing worth quoting")  # fmt: skip
    parser.add_argument("--runs", type=int, default=1, help="whole sets, one after another")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs drained (N)")
    parser.add_argument("--rounds", type=int, default=1000, help="timed round trips (R)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed round trips first")
    parser.add_argument("--latency-budget-s", type=float, default=60.0,
                        help="stop timing round trips after this long (slow pollers)")  # fmt: skip
    parser.add_argument("--job-s", type=float, default=2.0, help="the held job's length")
    parser.add_argument("--limit-s", type=float, default=360.0,
                        help="how long to wait for a killed job to start again")  # fmt: skip
    parser.add_argument("--peers", help="comma-separated names (default: all)")
    parser.add_argument("--out", type=Path, help="folder for peers.json and the PNGs "
                        "(default: a new one under the system's temp folder)")  # fmt: skip
    if parser.parse_known_args()[0].quick:
        parser.set_defaults(**QUICK)  # what is given on the command line still counts
    return parser.parse_args()


def main() -> int:
    args = parse()
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so every worker is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = all_peers()
    if args.peers:
        wanted = args.peers.split(",")
        chosen = [(peer, db) for peer, db in chosen if peer.name in wanted]
    out = args.out or Path(tempfile.mkdtemp(prefix="garage-peers-"))
    out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, dict[str, Any]]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        about = machine.describe(redis_url)
        print(f"machine: {machine.line(about)}", flush=True)
        print(f"settings: jobs {args.jobs}, rounds {args.rounds} (warm-up {args.warmup}, "
              f"budget {args.latency_budget_s:g} s), held job {args.job_s:g} s, recovery "
              f"limit {args.limit_s:g} s, runs {args.runs}{', quick' if args.quick else ''}",
              flush=True)  # fmt: skip
        for number in range(1, args.runs + 1):
            run: dict[str, dict[str, Any]] = {}
            for peer, db in chosen:
                folder = Path(tmp) / f"run-{number}" / peer.name
                began = time.monotonic()
                run[peer.name] = measure(peer, db, redis_url, folder, args)
                print(f"run {number}, {summary_line(peer.name, run[peer.name])} "
                      f"[{time.monotonic() - began:.0f} s]", flush=True)  # fmt: skip
            runs.append(run)
    print()
    print(report.tables(runs))
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": about,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "peers": {
            peer.name: {
                "db": db,
                "kill_targets": list(peer.kill_targets),
                "settings": [asdict(s) for s in peer.settings],
            }
            for peer, db in chosen
        },
        "runs": runs,
    }
    (out / "peers.json").write_text(json.dumps(document, indent=1))
    title = f"{about['cores']} cores, {args.runs} run(s){', quick' if args.quick else ''}"
    drawn = charts.draw(runs, out, title)
    print(f"\nwrote {out / 'peers.json'}, " + ", ".join(p.name for p in drawn))
    print(f"took {time.monotonic() - started:.0f} s")
    return _no_strays()


def _no_strays() -> int:
    """1, after killing them, if any process this run started is still there."""
    strays = psutil.Process().children(recursive=True)
    for process in strays:
        print(f"stray process left behind: {process.pid} {process.cmdline()}", file=sys.stderr)
        process.kill()
    return 1 if strays else 0


if __name__ == "__main__":
    sys.exit(main())
