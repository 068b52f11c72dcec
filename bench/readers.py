"""Stream readers for `bench/stream_scale.py`: one process submits its share of the chats
(queued: `wait_for_worker`, before any worker runs), opens each one's event stream (`GET
/v1/jobs/{id}/events`, through the public client's `events_with_ids`), says so by writing
`--ready` once every stream gave its first event, and reads every stream to its end.

For every `delta` event it notes when it arrived (`time.time()`), how many tokens it
carried (the demo backend's token is a word) and how long after its report reached the
broker it arrived: an event's id is its Redis stream entry id, `<ms>-<seq>`, where `<ms>`
is the Redis server's clock when the report's script appended it. Redis and this process
read the same machine's clock; the entry's time is whole milliseconds, so the figure reads
up to 1 ms high. After the streams it reads each job once for its lease time and the
worker's first-token time. Everything goes to `--out` as JSON, with the CPU time this
process used while the streams ran.

    python bench/readers.py --url URL --key USER_KEY --streams 500 --tokens 100 \
        --ready READY --out OUT.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from roundtrip import run

from garage.client import AsyncClient, http_client
from garage.contract import JobCreate

MODEL = "garage-demo"


def spec(tokens: int) -> JobCreate:
    """A chat the demo backend answers with exactly `tokens` words ("[garage demo ...] You
    said:" and the prompt, cut at `max_tokens`), queued until a worker serves the model."""
    words = " ".join(f"w{i}" for i in range(tokens))
    request = {"messages": [{"role": "user", "content": words}], "max_tokens": tokens}
    return JobCreate(model=MODEL, request=request, wait_for_worker=True)


class Stream:
    """One chat: submitted, then its stream read to the end."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()  # its first event came
        self.job_id = ""
        self.ended: str | None = None
        self.deltas: list[tuple[float, int, float]] = []  # arrived (s), tokens, after report (ms)

    async def follow(self, client: AsyncClient, job: JobCreate, sending: asyncio.Semaphore) -> None:
        try:
            async with sending:
                self.job_id = (await client.submit_spec(job)).id
            async for event_id, event in client.events_with_ids(self.job_id):
                arrived = time.time()
                self.opened.set()
                if event.type == "delta":
                    reported_ms = int(event_id.partition("-")[0])
                    latency_ms = arrived * 1000 - reported_ms
                    self.deltas.append((arrived, len(event.text.split()), latency_ms))
                elif event.type in ("done", "error"):
                    self.ended = event.type
        finally:
            self.opened.set()  # a stream that failed is not waited for

    async def record(self, client: AsyncClient) -> dict[str, Any]:
        job = await client.get(self.job_id)
        started = job.started_at.timestamp() if job.started_at else None
        first = job.timings.first_token_ms if job.timings else None
        return {"job_id": self.job_id, "ended": self.ended, "deltas": self.deltas,
                "started_at": started, "first_token_ms": first}  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    job = spec(args.tokens)
    sending = asyncio.Semaphore(args.submits_in_flight)
    # a connection for every stream, and some for the submits
    http = http_client(args.url, timeout_s=120, max_connections=args.streams + 64)
    streams = [Stream() for _ in range(args.streams)]
    async with AsyncClient(args.url, args.key, http=http) as client:
        reading = [asyncio.create_task(s.follow(client, job, sending)) for s in streams]
        await asyncio.gather(*(s.opened.wait() for s in streams))
        cpu_at_ready = time.process_time()
        args.ready.write_text("ready")
        outcomes = await asyncio.gather(*reading, return_exceptions=True)
        cpu_s = time.process_time() - cpu_at_ready
        records = [await s.record(client) for s in streams if s.job_id]
    await http.aclose()
    failed = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    document = {"streams": records, "errors": failed, "cpu_s": cpu_s}
    args.out.write_text(json.dumps(document))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the broker")
    parser.add_argument("--key", required=True, help="a user key")
    parser.add_argument("--streams", type=int, required=True, help="chats to follow")
    parser.add_argument("--tokens", type=int, required=True, help="tokens a chat")
    parser.add_argument("--submits-in-flight", type=int, default=16)
    parser.add_argument("--ready", type=Path, required=True, help="written once all are open")
    parser.add_argument("--out", type=Path, required=True, help="where the figures go")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main(parse()))
    sys.exit(0)
