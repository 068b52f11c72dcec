"""Simulated workers for `bench/idle_scale.py`: one process runs many, each with its own
worker key and worker id, each long-polling the broker the way `garage worker run` does
(`POST /v1/worker/poll` with `wait_s`, again as soon as the answer comes).

A simulated worker serves one model with one slot and has no backend: a job it is leased
is completed at once with an empty answer, and it polls again. Its calls go through the
daemon's own `call_broker`, so a broker that answers 503 or not at all is tried again
with the daemon's backoff (exponential, random, from 0.2 s up to 30 s); each retry is
counted. Every poll's send and
answer times (`time.monotonic()`, the same clock in every process on Linux) and the jobs
it brought are written to `--out` as JSON when the process gets SIGTERM, so the bench can
tell how long an enqueue took to reach a poller and how many polls one enqueue woke.

Run by `idle_scale.py`, one process per share of the workers:

    python bench/pollers.py --url URL --keys KEYS.json --out POLLS.json [--first 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
import time
from pathlib import Path

from roundtrip import run

from garage.client import WorkerAPI, http_client
from garage.contract import CompleteReport, PollRequest
from garage.worker.retries import call_broker

RESULT = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                       "finish_reason": "stop"}]}  # fmt: skip


class Polls(logging.Handler):
    """What every simulated worker of this process saw: polls, and the retries
    `call_broker` logged (`poll.retry`, `complete.retry`)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.polls: list[tuple[float, float, list[str]]] = []  # sent, answered, job ids
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(f"{record.getMessage()}: {getattr(record, 'error', '')}")

    def document(self) -> dict[str, object]:
        return {"polls": self.polls, "errors": len(self.errors), "error_samples": self.errors[:5]}


async def simulate(api: WorkerAPI, request: PollRequest, polls: Polls) -> None:
    """One worker: poll, complete what came, poll again, until cancelled. A poll's time
    runs from its first try to the answer, as the daemon sees it."""
    while True:
        sent = time.monotonic()
        reply = await call_broker("poll", functools.partial(api.poll, request))
        answered = time.monotonic()
        polls.polls.append((sent, answered, [lease.job_id for lease in reply.leases]))
        for lease in reply.leases:
            done = CompleteReport(lease_token=lease.lease_token, result=RESULT)
            await call_broker("complete", functools.partial(api.complete, lease.job_id, done))


async def main(args: argparse.Namespace) -> None:
    keys: list[str] = json.loads(args.keys.read_text())
    polls = Polls()
    logging.getLogger("garage.worker.retries").addHandler(polls)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    http = http_client(args.url, timeout_s=args.wait_s + 30, max_connections=len(keys) + 16)
    tasks: list[asyncio.Task[None]] = []
    try:
        started = time.monotonic()
        for i, key in enumerate(keys):
            # Ramp: the broker sees first polls at `--ramp-per-s`, not all at once.
            delay = started + i / args.ramp_per_s - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
            number = args.first + i
            request = PollRequest(worker_id=f"sim-{number}", name=f"sim-{number}",
                                  models=[args.model], slots_free=1, slots_total=1,
                                  backend="simulated", wait_s=args.wait_s)  # fmt: skip
            api = WorkerAPI(args.url, key, http=http)
            tasks.append(asyncio.create_task(simulate(api, request, polls)))
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        args.out.write_text(json.dumps(polls.document()))
        await http.aclose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the broker")
    parser.add_argument("--keys", type=Path, required=True, help="JSON list of worker keys")
    parser.add_argument("--out", type=Path, required=True, help="where the polls go on SIGTERM")
    parser.add_argument("--first", type=int, default=0, help="number of the first worker id")
    parser.add_argument("--model", default="idle-model")
    parser.add_argument("--wait-s", type=float, default=25.0, help="each poll's wait_s")
    parser.add_argument("--ramp-per-s", type=float, default=200.0,
                        help="first polls a second from this process")  # fmt: skip
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main(parse()))
    sys.exit(0)
