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
busy CPU minus theirs is what other work on the box took meanwhile. One untimed wave per
level and path warms connections up first.

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
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from roundtrip import pct, run, spy, summarize
from servers import broker, fake_openai, make_keys, redis_server, workers

MODEL = "bench-chat"
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


async def stream_wave(sdk: Any, streams: int, tokens: int) -> tuple[list[float], float]:
    """`streams` streamed chats at once; each one's time to first text (ms), and the
    seconds from the first request to the last stream's end."""
    messages = prompt(tokens)

    async def one() -> float:
        started = time.perf_counter()
        stream = await sdk.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                                   max_tokens=tokens)  # fmt: skip
        first, parts = None, []
        async for chunk in stream:
            if chunk.choices and (text := chunk.choices[0].delta.content):
                if first is None:
                    first = time.perf_counter() - started
                parts.append(text)
        got = len("".join(parts).split())
        assert first is not None and got == tokens, f"{got} tokens of {tokens}"
        return first * 1000

    started = time.perf_counter()
    ttfts = await asyncio.gather(*(one() for _ in range(streams)))
    return list(ttfts), time.perf_counter() - started


async def engine_counters(http: httpx.AsyncClient) -> tuple[int, int]:
    stats = (await http.get("/_fake/engine")).json()
    return stats["steps"], stats["tokens"]


def reports_per_job(log: Path, offset: int) -> tuple[float | None, int]:
    """Lease reports per completed job in the worker's JSON log after `offset`; the new
    offset."""
    with log.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().splitlines()
        end = handle.tell()
    counts = []
    for line in lines:
        if b'"job.completed"' in line:
            counts.append(json.loads(line)["reports"])
    return (statistics.fmean(counts) if counts else None), end


async def level_waves(
    args: argparse.Namespace,
    streams: int,
    urls: dict[str, tuple[str, str]],
    meter: Meter,
    engine_url: str,
    worker_log: Path,
    on_profile: Callable[[], Callable[[], None]] | None,
) -> Level:
    """The waves of one level: a warm-up per path, then `args.waves` pairs, alternating."""
    from openai import AsyncOpenAI

    level = Level(streams)
    limits = httpx.Limits(max_connections=streams + 16, max_keepalive_connections=streams + 16)
    async with (
        httpx.AsyncClient(base_url=engine_url) as control,
        AsyncOpenAI(base_url=urls["direct"][0], api_key=urls["direct"][1], max_retries=0,
                    http_client=httpx.AsyncClient(limits=limits, timeout=120)) as direct,
        AsyncOpenAI(base_url=urls["garage"][0], api_key=urls["garage"][1], max_retries=0,
                    http_client=httpx.AsyncClient(limits=limits, timeout=120)) as garage,
    ):  # fmt: skip
        sdks = {"direct": direct, "garage": garage}
        for sdk in sdks.values():  # untimed: opens the connections on every hop
            await stream_wave(sdk, streams, 2)
        _, offset = reports_per_job(worker_log, 0)  # the warm-up's jobs are not counted
        for number in range(args.waves):
            for path, sdk in sdks.items():
                steps, produced = await engine_counters(control)
                before = meter.read()
                ttfts, seconds = await stream_wave(sdk, streams, args.tokens)
                cpu, others = Meter.since(before, meter.read(), seconds)
                steps_after, produced_after = await engine_counters(control)
                occupancy = (produced_after - produced) / max(1, steps_after - steps)
                reports = None
                if path == "garage":
                    reports, offset = reports_per_job(worker_log, offset)
                wave = Wave(path, streams, streams * args.tokens, seconds, ttfts, cpu, others,
                            occupancy, reports)  # fmt: skip
                level.waves.append(wave)
                print(f"  {streams:>4} streams, wave {number + 1}, {path:>6}: "
                      f"{wave.tokens_per_s:8.0f} tokens/s, first token p50 "
                      f"{statistics.median(ttfts):7.1f} ms, engine {occupancy:5.1f} seqs/step, "
                      f"others {others:.2f} cores", flush=True)  # fmt: skip
        if on_profile is not None:
            stop = on_profile()
            try:
                await stream_wave(garage, streams, args.tokens)
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


def table(levels: Sequence[Level], args: argparse.Namespace) -> str:
    """Two markdown tables: the rates and first tokens, then where the CPU went."""
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
    for level in levels:
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
    return "\n".join([*speed, "", *cost])


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
        engine = ["--models", MODEL, "--max-seqs", str(args.max_seqs), "--step-ms",
                  str(args.step_ms), "--prefill-ms", str(args.prefill_ms)]  # fmt: skip
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
                    waves = level_waves(args, streams, urls, Meter(pids), backend.url,
                                        folder / "worker-0.log", spying)  # fmt: skip
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
