"""Benchmark: many event streams from one broker process (issue 19, point 3). A thousand
clients each follow a running job's `GET /v1/jobs/{id}/events` (SSE) at once; how many
tokens a second reach them, and how long after a report reaches the broker does its text
reach the reader?

Starts a `redis-server`, one `garage broker run`, and `--workers` `garage worker run
--backend demo` daemons with enough slots between them for every stream; the demo backend
streams each reply a word (its token) every 1/`--tokens-per-s` s. `--readers` processes
(`bench/readers.py`) submit the chats and follow their streams through the public client,
`--streams` in all, each a reply of `--tokens` tokens. Every stream is a job really running
on a worker; each of the worker's lease reports becomes one `delta` event. The chats are
queued and every stream is open before the workers start, so all of them run at once.

  delivered   tokens a second across all streams while every stream was flowing (from
              the last stream's first token to the first stream's last), against what
              the workers produced (streams x tokens-per-s); and over the whole run.
  added       for every delta: its arrival at the reader minus the Redis time of the
              report that carried it (the event's stream entry id), p50 / p90 / p99: the
              broker's fan-out (pub/sub, the reader's connection) and the reader's parsing.
  first       each stream's first token at the reader, after the worker had it: the
              job's lease time (`started_at`) plus the worker's `first_token_ms`; this one
              includes the worker's report and any wait for an earlier report of the job.
  CPU         of the broker, redis-server, the workers and the readers over the run
              (psutil), per 1,000 tokens and per delta; the machine's other work.

    .venv/bin/python bench/stream_scale.py                          # 1,000 streams
    .venv/bin/python bench/stream_scale.py --quick --json out.json  # 20 streams, for the tests
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import redis
from peers import machine
from processes import start, stop
from roundtrip import pct, run
from saturation import Meter
from servers import ROOT, broker, make_keys, redis_server, workers

READERS = Path(__file__).resolve().parent / "readers.py"
QUICK = {"streams": 20, "tokens": 20, "tokens_per_s": 20.0, "workers": 2, "readers": 2,
         "runs": 1}  # fmt: skip
# Issue 19's point 3 names no numbers; the measure of "keeps up" is delivered / produced.


def one_run(args: argparse.Namespace, number: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if args.logs:
            folder = args.logs / f"run-{number}"
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis_url = stack.enter_context(redis_server(folder))
        svc = stack.enter_context(broker(f"{redis_url}/0", folder / "broker.log"))
        user_key, worker_key = run(make_keys(svc.url))
        readers, outputs, ready = [], [], []
        share = math.ceil(args.streams / args.readers)
        try:
            for n in range(args.readers):
                mine = min(share, args.streams - n * share)
                outputs.append(folder / f"streams-{n}.json")
                ready.append(folder / f"ready-{n}")
                command = [sys.executable, str(READERS), "--url", svc.url, "--key", user_key,
                           "--streams", str(mine), "--tokens", str(args.tokens), "--ready",
                           str(ready[-1]), "--out", str(outputs[-1])]  # fmt: skip
                readers.append(start(command, log=folder / f"readers-{n}.log", cwd=ROOT))
            until_ready(ready, readers, limit_s=args.streams / 20 + 60)
            slots = math.ceil(args.streams / args.workers)
            options = ["--backend", "demo", "--demo-tokens-per-s", f"{args.tokens_per_s:g}",
                       "--slots", str(slots)]  # fmt: skip
            with workers(svc.url, worker_key, args.workers, folder, options) as daemons:
                with redis.Redis.from_url(redis_url) as client:
                    redis_pid = int(client.info("server")["process_id"])
                pids = {"broker": svc.pid, "redis": redis_pid}
                meter = Meter(pids | {f"worker-{i}": p.pid for i, p in enumerate(daemons)})
                before = meter.read()
                started = time.monotonic()
                limit_s = args.tokens / args.tokens_per_s * 3 + 120
                for process in readers:
                    process.wait(timeout=max(1.0, started + limit_s - time.monotonic()))
                seconds = time.monotonic() - started
                cpu, others = Meter.since(before, meter.read(), seconds)
                rss_mb = psutil.Process(svc.pid).memory_info().rss / 2**20
        finally:
            stop(readers)
        logs = "".join(p.read_text()[-2000:] for p in folder.glob("readers-*.log"))
        assert all(p.returncode == 0 for p in readers), logs
        documents = [json.loads(out.read_text()) for out in outputs]
    streams = [s for d in documents for s in d["streams"]]
    errors = [e for d in documents for e in d["errors"]]
    cpu |= {f"reader-{i}": d["cpu_s"] for i, d in enumerate(documents)}
    others = max(0.0, others - sum(d["cpu_s"] for d in documents) / seconds)
    return figures(args, streams, errors, cpu, others, seconds, rss_mb)


def until_ready(flags: Sequence[Path], processes: Sequence[subprocess.Popen[bytes]],
                limit_s: float) -> None:  # fmt: skip
    """Waits until every reader process has all its streams open."""
    deadline = time.monotonic() + limit_s
    while not all(flag.exists() for flag in flags):
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise RuntimeError("the readers did not open their streams; see readers-*.log")
        time.sleep(0.1)


def figures(args: argparse.Namespace, streams: list[dict[str, Any]], errors: list[str],
            cpu: dict[str, float], others: float, seconds: float,
            rss_mb: float) -> dict[str, Any]:  # fmt: skip
    deltas = [d for s in streams for d in s["deltas"]]
    tokens = sum(n for _, n, _ in deltas)
    firsts = [s["deltas"][0][0] for s in streams if s["deltas"]]
    lasts = [s["deltas"][-1][0] for s in streams if s["deltas"]]
    # every stream flowing: from the last one's first token to the first one's last
    lo, hi = max(firsts), min(lasts)
    steady = sum(n for at, n, _ in deltas if lo <= at <= hi) / (hi - lo) if hi > lo else None
    grouped = {"workers": [v for k, v in cpu.items() if k.startswith("worker-")],
               "readers": [v for k, v in cpu.items() if k.startswith("reader-")]}  # fmt: skip
    cpu_s = {"broker": cpu["broker"], "redis": cpu["redis"],
             **{name: sum(values) for name, values in grouped.items()}}  # fmt: skip
    return {
        "streams": len(streams),
        "streams_complete": sum(1 for s in streams if s["ended"] == "done"),
        "errors": errors[:5],
        "tokens": tokens,
        "tokens_expected": args.streams * args.tokens,
        "produced_per_s": args.streams * args.tokens_per_s,
        "steady_tokens_per_s": steady,
        "steady_window_s": max(0.0, hi - lo),
        "overall_tokens_per_s": tokens / (max(lasts) - min(firsts)),
        "added_ms": [latency for _, _, latency in deltas],
        "first_token_ms": [
            (s["deltas"][0][0] - s["started_at"]) * 1000 - s["first_token_ms"]
            for s in streams
            if s["deltas"] and s["started_at"] and s["first_token_ms"] is not None
        ],
        "deltas_per_stream": len(deltas) / len(streams),
        "tokens_per_delta": tokens / max(len(deltas), 1),
        "seconds": seconds,
        "cores": {name: value / seconds for name, value in cpu_s.items()},
        "cpu_ms_per_1k_tokens": {
            name: value / max(tokens, 1) * 1e6 for name, value in cpu_s.items()
        },
        "broker_cpu_us_per_delta": cpu["broker"] / max(len(deltas), 1) * 1e6,
        "others_cores": others,
        "broker_rss_mb": rss_mb,
    }


def report(runs: list[dict[str, Any]]) -> str:
    def spread(values: Sequence[float], digits: int = 1) -> str:
        middle = statistics.median(values)
        if len(values) == 1:
            return f"{middle:.{digits}f}"
        return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    def each(get: Any, digits: int = 1) -> str:
        return spread([get(r) for r in runs], digits)

    rows = [
        ("streams complete / started", each(lambda r: r["streams_complete"], 0) + " / "
         + each(lambda r: r["streams"], 0)),
        ("tokens delivered / expected", each(lambda r: r["tokens"], 0) + " / "
         + each(lambda r: r["tokens_expected"], 0)),
        ("tokens/s produced by the workers (streams x pace)",
         each(lambda r: r["produced_per_s"], 0)),
        ("tokens/s delivered, every stream flowing", each(
            lambda r: r["steady_tokens_per_s"] or float("nan"), 0)),
        ("... that window, s", each(lambda r: r["steady_window_s"])),
        ("tokens/s delivered, first token to last", each(
            lambda r: r["overall_tokens_per_s"], 0)),
        ("report at the broker -> reader, p50 / p90 / p99 ms", " / ".join(
            each(lambda r, q=q: pct(r["added_ms"], q)) for q in (0.5, 0.9, 0.99))),
        ("first token, the worker's -> the reader's, p50 / p99 ms", " / ".join(
            each(lambda r, q=q: pct(r["first_token_ms"], q)) for q in (0.5, 0.99))),
        ("delta events a stream / tokens a delta", each(lambda r: r["deltas_per_stream"])
         + " / " + each(lambda r: r["tokens_per_delta"], 2)),
        ("cores: broker / redis / workers / readers", " / ".join(
            each(lambda r, n=n: r["cores"][n], 2)
            for n in ("broker", "redis", "workers", "readers"))),
        ("CPU per 1,000 tokens, ms: broker / redis / workers / readers", " / ".join(
            each(lambda r, n=n: r["cpu_ms_per_1k_tokens"][n], 0)
            for n in ("broker", "redis", "workers", "readers"))),
        ("broker CPU per delta event, µs", each(lambda r: r["broker_cpu_us_per_delta"], 0)),
        ("broker RSS at the end, MB", each(lambda r: r["broker_rss_mb"], 0)),
        ("machine's other work, cores", each(lambda r: r["others_cores"], 2)),
    ]  # fmt: skip
    lines = ["| figure | value |", "| --- | --- |"]
    return "\n".join(lines + [f"| {label} | {value} |" for label, value in rows])


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="streams at once")
    parser.add_argument("--tokens", type=int, default=100, help="tokens a reply")
    parser.add_argument("--tokens-per-s", type=float, default=5.0,
                        help="the demo backend's pace, each stream")  # fmt: skip
    parser.add_argument("--workers", type=int, default=4, help="garage worker run daemons")
    parser.add_argument("--readers", type=int, default=2, help="reader processes")
    parser.add_argument("--runs", type=int, default=1, help="whole runs, one after another")
    parser.add_argument("--quick", action="store_true", help="20 streams of 20 tokens")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs and the readers' "
                        "records in this folder")  # fmt: skip
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**QUICK)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM (a timeout, kill) unwinds like Ctrl-C, so every process started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        about = machine.describe(redis_url)
    print(f"machine: {machine.line(about)}", flush=True)
    print(f"{args.streams} streams of {args.tokens} tokens at {args.tokens_per_s:g} tokens/s "
          f"each; {args.workers} workers, {args.readers} reader processes, {args.runs} run(s)",
          flush=True)  # fmt: skip
    runs = []
    for number in range(1, args.runs + 1):
        found = one_run(args, number)
        runs.append(found)
        steady = found["steady_tokens_per_s"]
        print(f"run {number}: {found['streams_complete']} of {found['streams']} streams "
              f"complete, {found['tokens']} tokens; delivered "
              f"{steady if steady is None else round(steady)} tokens/s while all flowed "
              f"(produced {found['produced_per_s']:.0f}); report -> reader p50 "
              f"{pct(found['added_ms'], 0.5):.1f} ms, p99 {pct(found['added_ms'], 0.99):.1f} "
              f"ms; broker {found['cores']['broker']:.2f} cores", flush=True)  # fmt: skip
    print()
    print(f"{args.runs} run(s); median (lowest-highest)")
    print(report(runs))
    if args.json:
        args.json.write_text(json.dumps({"machine": about, "options": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "runs": runs}))  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
