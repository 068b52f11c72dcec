"""Benchmark: can one worker keep a vLLM-class server full? Tokens/s and time to first
token of many concurrent streamed chats, straight to a continuous-batching engine and
through garage, on this one box.

Starts a `redis-server`, `garage broker run`, and the tests' fake OpenAI-compatible server
paced by its continuous-batching engine (`tests/fakes/engine.py`: up to `--max-seqs`
sequences, a token for each every `--step-ms`, vLLM's SSE wire format). At each level of
concurrency C (16, 64, 256) it starts one `garage worker run --backend openai --slots C`
in front of the engine, and sends waves of C streamed chats of `--tokens` tokens at once
with the openai SDK (AsyncOpenAI, `stream=True`), alternating:

  direct   to the engine's /v1: what the box can do at all (the physical limit), and
  garage   to the broker's /v1: client -> broker -> the daemon's poll -> the engine, and
           every token back as lease reports -> the broker's event fan-out -> client.

Each wave's tokens/s runs from its first request to its last stream's end; time to first
token from each request to its first chunk with text. CPU per 1,000 tokens is read with
psutil from every process (client, engine, worker, broker, redis-server), and the machine's
busy CPU minus theirs is what other work on the box took meanwhile. Right before each
timed wave an untimed one of 2-token chats on the same path warms it up (the worker's
connections); each wave's client opens connections of its own.

`--profile DIR` records the worker and the broker with py-spy (the bench extra) in one
more garage wave at the largest level, after the timed ones, so py-spy's own CPU is in no
figure, and prints where their samples went. `--quick` (4 and 16 streams of 20 tokens)
runs in well under a minute; tests/bench runs it so it cannot rot. `--json FILE` keeps
the figures.

Run by hand:  .venv/bin/python bench/saturation.py [--profile /tmp/saturation]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from roundtrip import pct, run, spy, summarize
from servers import broker, fake_openai, make_keys, redis_server, workers

from garage.client import AsyncClient
from garage.contract import Job

MODEL = "bench-chat"
WARM_MODEL = "bench-warm"  # the untimed waves', told apart in the worker's log
LEVELS = (16, 64, 256)
QUICK_LEVELS = (4, 16)
# The goals of issue 19, point 1: garage's tokens/s as a share of direct, and how much
# later its first token may come (p50, ms).
GOALS = {64: (0.97, 20.0), 256: (0.90, None)}


@dataclass
class Wave:
    path: str  # "direct" or "garage"
    streams: int
    tokens: int  # completion tokens received, all streams
    seconds: float
    ttft_ms: list[float]
    cpu_s: dict[str, float]  # CPU seconds each process used during the wave
    others_cores: float  # the machine's busy CPU not used by these processes, in cores
    engine_occupancy: float  # mean sequences per engine step (max_seqs when full)
    first_token_path: dict[str, list[float]]  # `first_token_path`'s spans
    reports_per_job: float | None = None  # lease reports per job (garage waves)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def cpu_ms_per_1k(self, name: str) -> float:
        return self.cpu_s.get(name, 0.0) / self.tokens * 1e6


@dataclass
class Level:
    streams: int
    waves: list[Wave] = field(default_factory=list)

    def of(self, path: str) -> list[Wave]:
        return [w for w in self.waves if w.path == path]

    def rate(self, path: str) -> float:
        return statistics.median(w.tokens_per_s for w in self.of(path))

    def ratio(self) -> float:
        return self.rate("garage") / self.rate("direct")

    def ratios(self) -> list[float]:
        """garage / direct per pair of waves (each garage wave against the direct one
        just before it)."""
        pairs = zip(self.of("direct"), self.of("garage"), strict=True)
        return [g.tokens_per_s / d.tokens_per_s for d, g in pairs]

    def ttft(self, path: str, q: float) -> float:
        return pct([t for w in self.of(path) for t in w.ttft_ms], q)

    def span(self, path: str, name: str) -> str:
        """A span of the first token's path, "p50 / p90" (ms), the median over the waves."""
        waves = self.of(path)
        p50, p90 = (statistics.median(w.first_token_path[name][i] for w in waves) for i in (0, 1))
        return f"{p50:.0f} / {p90:.0f}"

    def cores(self, path: str) -> float:
        """The cores this bench's processes kept busy during the path's waves."""
        waves = self.of(path)
        return sum(sum(w.cpu_s.values()) for w in waves) / sum(w.seconds for w in waves)

    def cpu(self, path: str, name: str) -> float:
        waves = self.of(path)
        return sum(w.cpu_s.get(name, 0.0) for w in waves) / sum(w.tokens for w in waves) * 1e6


def prompt(tokens: int) -> list[dict[str, str]]:
    """A prompt the fake answers with more than `tokens` words ("echo: " + the prompt, a
    token a word), so `max_tokens` makes every reply exactly `tokens` long."""
    words = " ".join(f"w{i}" for i in range(tokens + 10))
    return [{"role": "user", "content": words}]


class Meter:
    """CPU seconds of named processes, and the machine's busy CPU, between two reads."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def read(self) -> tuple[dict[str, float], float]:
        own = {}
        for name, process in self._processes.items():
            times = process.cpu_times()
            own[name] = times.user + times.system
        machine = psutil.cpu_times()
        return own, sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)

    @staticmethod
    def since(before: tuple[dict[str, float], float], after: tuple[dict[str, float], float],
              seconds: float) -> tuple[dict[str, float], float]:  # fmt: skip
        """CPU seconds per process, and the others' share of the machine in cores."""
        own = {name: after[0][name] - before[0][name] for name in before[0]}
        return own, max(0.0, (after[1] - before[1]) - sum(own.values())) / seconds


@dataclass
class Streamed:
    started: float  # time.monotonic() at the wave's start
    started_wall: float  # time.time() then: the broker's timestamps are wall-clock
    seconds: float  # from the first request to the last stream's end
    sent_s: list[float]  # when each request went out, after the start
    ttft_ms: list[float]  # each one's time to first text


async def stream_wave(sdk: Any, streams: int, tokens: int, model: str = MODEL) -> Streamed:
    """`streams` streamed chats at once, each read to its end."""
    messages = prompt(tokens)
    started, started_wall = time.monotonic(), time.time()

    async def one() -> tuple[float, float]:
        sent = time.monotonic()
        stream = await sdk.chat.completions.create(model=model, messages=messages, stream=True,
                                                   max_tokens=tokens)  # fmt: skip
        first, parts = None, []
        async for chunk in stream:
            if chunk.choices and (text := chunk.choices[0].delta.content):
                if first is None:
                    first = time.monotonic() - sent
                parts.append(text)
        got = len("".join(parts).split())
        assert first is not None and got == tokens, f"{got} tokens of {tokens}"
        return sent - started, first * 1000

    done = await asyncio.gather(*(one() for _ in range(streams)))
    seconds = time.monotonic() - started
    return Streamed(started, started_wall, seconds, [s for s, _ in done], [t for _, t in done])


def first_token_path(
    streamed: Streamed, sequences: list[list[float]], jobs: Sequence[Job] = ()
) -> dict[str, list[float]]:
    """Where the time to first token went, p50 and p90 (ms), quantile by quantile (the
    client, the broker and the engine cannot match requests, but they read the same
    clocks): from the request to its arrival at the engine, from there to the engine's
    first token (the rest of a step and its own), and from there to the client's first
    text. Through garage, the way to the engine is split by the broker's timestamps: to
    the job's creation (the submit), its wait for a lease, and from the lease to the
    engine (the poll's answer, the worker starting the job)."""
    sent = streamed.sent_s
    arrived = [a - streamed.started for a, _, _ in sequences]
    made = [f - streamed.started for _, f, _ in sequences if f is not None]
    seen = [s + t / 1000 for s, t in zip(sent, streamed.ttft_ms, strict=True)]
    spans = {"to_engine": (arrived, sent), "in_engine": (made, arrived), "back": (seen, made)}
    if jobs:
        created = [j.created_at.timestamp() - streamed.started_wall for j in jobs]
        leased = [j.started_at.timestamp() - streamed.started_wall for j in jobs if j.started_at]
        spans |= {"submit": (created, sent), "queued": (leased, created),
                  "lease_to_engine": (arrived, leased)}  # fmt: skip
    return {
        name: [round((pct(later, q) - pct(earlier, q)) * 1000, 1) for q in (0.5, 0.9)]
        for name, (later, earlier) in spans.items()
    }


async def wave_jobs(url: str, key: str, since_wall: float) -> list[Job]:
    """The jobs of MODEL created since `since_wall` (time.time()), from the broker's list."""
    jobs: list[Job] = []
    async with AsyncClient(url, key) as client:
        after = None
        while True:
            page = await client.list(limit=100, after=after, model=MODEL)
            jobs += [j for j in page.data if j.created_at.timestamp() >= since_wall]
            if not page.has_more or page.data[-1].created_at.timestamp() < since_wall:
                return jobs
            after = page.last_id


async def engine_stats(http: httpx.AsyncClient, since: float | None = None) -> dict[str, Any]:
    params = {"since": str(since)} if since is not None else {}
    return (await http.get("/_fake/engine", params=params)).json()


class WorkerLog:
    """Lease reports per job, read from the worker's JSON log: `job.start` names a job's
    model, `job.completed` counts the reports it sent before the final one."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._models: dict[str, str] = {}

    async def reports(self, jobs: int, timeout_s: float = 5.0) -> float | None:
        """The mean of the next `jobs` completed jobs of MODEL (the warm-up's are another
        model), waiting up to `timeout_s` for the last ones to be logged."""
        counts: list[int] = []
        deadline = time.monotonic() + timeout_s
        while len(counts) < jobs and time.monotonic() < deadline:
            for entry in self._read():
                if entry.get("event") == "job.start":
                    self._models[entry["job_id"]] = entry.get("model", "")
                elif entry.get("event") == "job.completed" and (
                    self._models.pop(entry["job_id"], None) == MODEL
                ):
                    counts.append(entry["reports"])
            if len(counts) < jobs:
                await asyncio.sleep(0.05)
        return statistics.fmean(counts) if counts else None

    def _read(self) -> list[dict[str, Any]]:
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line being written waits for the next read
        self._offset += len(whole)
        return [json.loads(line) for line in whole.splitlines() if line.startswith(b"{")]


@contextlib.asynccontextmanager
async def openai_sdk(url: str, key: str, streams: int) -> AsyncIterator[Any]:
    """An AsyncOpenAI client on connections of its own, enough for `streams` at once."""
    from openai import AsyncOpenAI

    limits = httpx.Limits(max_connections=streams + 16, max_keepalive_connections=streams + 16)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        yield AsyncOpenAI(base_url=url, api_key=key, max_retries=0, http_client=http)


async def level_waves(
    args: argparse.Namespace,
    streams: int,
    urls: dict[str, tuple[str, str]],
    meter: Meter,
    engine_url: str,
    worker_log: WorkerLog,
    on_profile: Callable[[], Callable[[], None]] | None,
) -> Level:
    """The waves of one level: `args.waves` pairs, alternating. Each timed wave comes
    right after an untimed one on the same path (which opens the worker's connections),
    on connections of its own: a kept-alive one could be closed by its server (uvicorn
    closes them after 5 s idle) just as a request goes out, and a client that runs
    seconds behind the stream it reads cannot tell how long one has been idle."""
    level = Level(streams)
    async with httpx.AsyncClient(base_url=engine_url) as control:
        for number in range(args.waves):
            for path, (url, key) in urls.items():
                async with openai_sdk(url, key, streams) as sdk:
                    await stream_wave(sdk, streams, 2, WARM_MODEL)
                async with openai_sdk(url, key, streams) as sdk:
                    engine = await engine_stats(control)
                    before = meter.read()
                    streamed = await stream_wave(sdk, streams, args.tokens)
                    cpu, others = Meter.since(before, meter.read(), streamed.seconds)
                after = await engine_stats(control, since=streamed.started)
                occupancy = (after["tokens"] - engine["tokens"]) / max(
                    1, after["steps"] - engine["steps"]
                )
                jobs = []
                if path == "garage":
                    jobs = await wave_jobs(url.removesuffix("/v1"), key, streamed.started_wall)
                spans = first_token_path(streamed, after["sequences"], jobs)
                reports = await worker_log.reports(streams) if path == "garage" else None
                wave = Wave(path, streams, streams * args.tokens, streamed.seconds,
                            streamed.ttft_ms, cpu, others, occupancy, spans, reports)  # fmt: skip
                level.waves.append(wave)
                print(f"  {streams:>4} streams, wave {number + 1}, {path:>6}: "
                      f"{wave.tokens_per_s:8.0f} tokens/s, first token p50 "
                      f"{statistics.median(wave.ttft_ms):7.1f} ms (to the engine "
                      f"{spans['to_engine'][0]:.0f}, in it {spans['in_engine'][0]:.0f}, back "
                      f"{spans['back'][0]:.0f}), engine {occupancy:5.1f} seqs/step, "
                      f"others {others:.2f} cores", flush=True)  # fmt: skip
    if on_profile is not None:
        url, key = urls["garage"]
        async with openai_sdk(url, key, streams) as sdk:
            await stream_wave(sdk, streams, 2, WARM_MODEL)
        async with openai_sdk(url, key, streams) as sdk:
            stop = on_profile()
            try:
                await stream_wave(sdk, streams, args.tokens)
            finally:
                stop()
    return level


def profiler(folder: Path, pids: dict[str, int]) -> Callable[[], Callable[[], None]]:
    """Starts py-spy on each of `pids` (named) when called; the returned call stops them
    (SIGINT: py-spy writes its record) and waits for the records."""

    def begin() -> Callable[[], None]:
        folder.mkdir(parents=True, exist_ok=True)
        spies = [spy(pid, folder / f"{name}.raw", 600) for name, pid in pids.items()]

        def end() -> None:
            for process in spies:
                process.send_signal(signal.SIGINT)
            for process in spies:
                process.wait(timeout=60)

        return end

    return begin


def own_frames(raw: Path, top: int = 12) -> str:
    """Samples by the innermost frame of garage's own code on the stack (the function of
    garage's whose calls cost them), in a py-spy raw record."""
    own: dict[str, int] = {}
    total = 0
    mine = re.compile(r"\((worker|broker|client|contract)/")  # py-spy names them so
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        frames = stack.split(";")
        frame = next((f for f in reversed(frames) if mine.search(f)), "(outside garage)")
        own[frame] = own.get(frame, 0) + int(count)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    return "\n".join(f"  {n / total:6.1%}  {frame}" for frame, n in ranked)


# What each process does, told by a frame on the stack: a sample counts for the first task
# (in this order) whose frame it has below it. py-spy shows a resumed coroutine with the
# frames of its whole task, so a request's own route is on the stack while it runs.
TASKS = {
    "worker": [
        ("lease reports (text streamed to the broker)", "LeaseReporter.run (worker/"),
        ("final reports (complete)", "JobRunner._final (worker/"),
        ("reading the engine's SSE stream", "OpenAIBackend.run (worker/"),
        ("polls (lease hand-out)", "Worker._poll_once (worker/"),
        ("health checks", "Worker._monitor (worker/"),
    ],
    "broker": [
        ("lease reports in (report.lua)", "report (broker/api/workers.py"),
        ("results in (complete.lua)", "complete (broker/api/workers.py"),
        ("polls (claim.lua, parking)", "poll (broker/api/workers.py"),
        ("submits (the chat requests' submit.lua)", "JobService.submit (broker/"),
        ("SSE chunks out to the clients", "EventSourceResponse"),
        ("pub/sub messages to the streams (the fan-out)", "Notifier.run (broker/"),
        ("any request: key, body, answer (most are reports)", "EndpointApp.__call__ (broker/"),
        ("HTTP requests read and parsed (uvicorn)", "HttpToolsProtocol.data_received"),
    ],
}


def by_task(raw: Path, tasks: list[tuple[str, str]]) -> str:
    """The share of a py-spy raw record's samples under each task."""
    counts = dict.fromkeys([name for name, _ in tasks], 0)
    rest = "the event loop's own code and the rest"
    counts[rest] = 0
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        task = next((name for name, frame in tasks if frame in stack), rest)
        counts[task] += int(count)
    return "\n".join(f"  {n / total:6.1%}  {name}" for name, n in counts.items())


def table(levels: Sequence[Level], args: argparse.Namespace) -> str:
    """Three markdown tables: the rates and first tokens, where the first token's time
    went, and where the CPU went."""
    speed = [
        "| streams | engine's limit (tokens/s) | direct (tokens/s) | garage (tokens/s) | garage"
        " / direct (each pair) | first token p50 / p90, direct (ms) | through garage (ms) |"
        " garage adds, p50 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    cost = [
        "| streams | CPU per 1,000 tokens (ms): worker / broker / redis | client, direct /"
        " garage | engine, direct / garage | engine's sequences a step, direct / garage |"
        " reports per job | cores busy: ours direct / garage; others |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    spans = [
        "| streams | first token, p50 / p90 (ms): to the engine, direct | garage | garage's:"
        " to the job's creation | queued for a lease | lease to the engine | in the engine,"
        " direct | garage | back to the client, direct | garage |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for level in levels:
        cells = [level.span("direct", "to_engine"), level.span("garage", "to_engine")]
        cells += [level.span("garage", name) for name in ("submit", "queued", "lease_to_engine")]
        cells += [level.span(path, name) for name in ("in_engine", "back")
                  for path in ("direct", "garage")]  # fmt: skip
        spans.append(f"| {level.streams} | {' | '.join(cells)} |")
        limit = min(level.streams, args.max_seqs) / args.step_ms * 1000
        pairs = ", ".join(f"{r:.2f}" for r in level.ratios())
        later = level.ttft("garage", 0.5) - level.ttft("direct", 0.5)
        speed.append(
            f"| {level.streams} | {limit:.0f} | {level.rate('direct'):.0f} "
            f"| {level.rate('garage'):.0f} | **{level.ratio():.2f}** ({pairs}) "
            f"| {level.ttft('direct', 0.5):.1f} / {level.ttft('direct', 0.9):.1f} "
            f"| {level.ttft('garage', 0.5):.1f} / {level.ttft('garage', 0.9):.1f} "
            f"| {later:.1f} |"
        )
        occupancy = [statistics.fmean(w.engine_occupancy for w in level.of(path))
                     for path in ("direct", "garage")]  # fmt: skip
        reports = [w.reports_per_job for w in level.of("garage") if w.reports_per_job]
        per_job = f"{statistics.fmean(reports):.1f}" if reports else "?"
        others = statistics.fmean(w.others_cores for w in level.waves)
        cost.append(
            f"| {level.streams} | {level.cpu('garage', 'worker'):.0f} / "
            f"{level.cpu('garage', 'broker'):.0f} / {level.cpu('garage', 'redis'):.0f} "
            f"| {level.cpu('direct', 'client'):.0f} / {level.cpu('garage', 'client'):.0f} "
            f"| {level.cpu('direct', 'engine'):.0f} / {level.cpu('garage', 'engine'):.0f} "
            f"| {occupancy[0]:.1f} / {occupancy[1]:.1f} | {per_job} "
            f"| {level.cores('direct'):.2f} / {level.cores('garage'):.2f}; {others:.2f} |"
        )
    return "\n".join([*speed, "", *spans, "", *cost])


def goals(levels: Sequence[Level]) -> str:
    lines = []
    for level in levels:
        if level.streams not in GOALS:
            continue
        share, ttft_ms = GOALS[level.streams]
        met = "met" if level.ratio() >= share else "NOT met"
        lines.append(f"{level.streams} streams: garage / direct {level.ratio():.2f}, goal "
                     f"{share:.2f}: {met}")  # fmt: skip
        if ttft_ms is not None:
            later = level.ttft("garage", 0.5) - level.ttft("direct", 0.5)
            met = "met" if later <= ttft_ms else "NOT met"
            lines.append(f"{level.streams} streams: first token {later:.1f} ms later (p50), "
                         f"goal {ttft_ms:.0f} ms at most: {met}")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")],
                        help=f"concurrent streams, comma-separated (default {LEVELS})")  # fmt: skip
    parser.add_argument("--tokens", type=int, help="tokens per chat (default 100)")
    parser.add_argument("--waves", type=int, default=2, help="timed waves per level and path")
    parser.add_argument("--max-seqs", type=int, default=256, help="the engine's sequences")
    parser.add_argument("--step-ms", type=float, default=20.0, help="the engine's step")
    parser.add_argument("--prefill-ms", type=float, default=0.0,
                        help="added to a step per sequence joining it")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="4 and 16 streams of 20 tokens")
    parser.add_argument("--profile", type=Path, help="py-spy records go to this folder")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    args.levels = args.levels or list(QUICK_LEVELS if args.quick else LEVELS)
    args.tokens = args.tokens or (20 if args.quick else 100)

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"engine: {args.max_seqs} sequences, a step {args.step_ms:g} ms, prefill "
          f"{args.prefill_ms:g} ms a sequence; {args.tokens} tokens a chat",
          flush=True)  # fmt: skip
    levels: list[Level] = []
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        folder = Path(tmp)
        engine = ["--models", f"{MODEL},{WARM_MODEL}", "--max-seqs", str(args.max_seqs),
                  "--step-ms", str(args.step_ms), "--prefill-ms", str(args.prefill_ms)]  # fmt: skip
        with (
            broker(f"{redis_url}/0", folder / "broker.log") as service,
            fake_openai(folder / "fake.log", *engine) as backend,
        ):
            user, worker_key = run(make_keys(service.url))
            urls = {"direct": (f"{backend.url}/v1", "none"), "garage": (f"{service.url}/v1", user)}
            redis_pid = _redis_pid(redis_url)
            for streams in args.levels:
                options = ["--backend", "openai", "--backend-url", backend.url, "--slots",
                           str(streams), "--log-level", "info", "--log-format", "json"]  # fmt: skip
                with workers(service.url, worker_key, 1, folder, options) as [daemon]:
                    pids = {"client": os.getpid(), "engine": backend.pid, "worker": daemon.pid,
                            "broker": service.pid, "redis": redis_pid}  # fmt: skip
                    spying = None
                    if args.profile and streams == max(args.levels):
                        profiled = {"worker": daemon.pid, "broker": service.pid}
                        spying = profiler(args.profile, profiled)
                    log = WorkerLog(folder / "worker-0.log")
                    waves = level_waves(args, streams, urls, Meter(pids), backend.url, log,
                                        spying)  # fmt: skip
                    levels.append(run(waves))
    print()
    print(f"{args.waves} waves per level and path; medians of the waves, first token over "
          f"every stream of them")  # fmt: skip
    print(table(levels, args))
    if report := goals(levels):
        print(report)
    if args.profile:
        for name in ("worker", "broker"):
            raw = args.profile / f"{name}.raw"
            print(f"where the {name}'s samples went (self):")
            print(summarize(raw, top=15))
            print("...by garage's own innermost frame on the stack:")
            print(own_frames(raw))
            print("...by task:")
            print(by_task(raw, TASKS[name]))
    if args.json:
        args.json.write_text(json.dumps([asdict(level) for level in levels], indent=1))


def _redis_pid(redis_url: str) -> int:
    """The pid of the redis-server this process started on `redis_url`'s port (redis
    rewrites its command line to `redis-server 127.0.0.1:PORT`)."""
    port = redis_url.rsplit(":", 1)[1]
    for child in psutil.Process().children():
        if "redis-server" in child.name() and f":{port}" in " ".join(child.cmdline()):
            return child.pid
    raise RuntimeError("redis-server not found among this process's children")


if __name__ == "__main__":
    sys.exit(main())
