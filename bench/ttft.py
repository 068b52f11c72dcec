"""Benchmark: time to first token through garage, minus the same request sent straight to
the backend.

Starts a `redis-server`, `garage broker run`, a fake OpenAI-compatible server that streams
its answer at once (the tests' fake, vLLM's SSE wire format) and one `garage worker run
--backend openai` in front of it. The same streamed chat request is then sent, in
alternating blocks, by the openai SDK:

  direct   to the fake server's /v1 (what a client on the rig would see), and
  garage   to the broker's /v1: client -> broker -> parked poll -> daemon -> fake server,
           and the first token back: daemon -> broker -> client.

The clock runs from the request to the first chunk with text. The SDK's own cost is in
both, so the difference is what garage adds.

Run by hand:  .venv/bin/python bench/ttft.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from roundtrip import describe, pct, run
from servers import broker, fake_openai, make_keys, redis_server, workers

MODEL = "bench-chat"
MESSAGES = [{"role": "user", "content": "how long is the path to the first token"}]


async def first_tokens(base_url: str, key: str, rounds: int, warmup: int = 30) -> list[float]:
    """Milliseconds from each streamed request to its first chunk with text."""
    from openai import AsyncOpenAI

    samples = []
    async with AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0) as sdk:
        for i in range(rounds + warmup):
            await asyncio.sleep(0.002)
            start = time.perf_counter()
            stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES,
                                                       stream=True)  # fmt: skip
            first = None
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - start
            assert first is not None, "no text came"
            if i >= warmup:
                samples.append(first * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1600, help="requests timed per side")
    parser.add_argument("--blocks", type=int, default=8)
    args = parser.parse_args()
    rounds = max(args.rounds // args.blocks, 1)
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        folder = Path(tmp)
        with (
            broker(f"{redis_url}/0", folder / "broker.log") as service,
            fake_openai(folder / "fake.log", "--models", MODEL) as backend,
        ):
            user, worker = run(make_keys(service.url))
            daemon = ["--backend", "openai", "--backend-url", backend.url, "--slots", "8"]
            direct: list[float] = []
            garage: list[float] = []
            with workers(service.url, worker, 1, folder, daemon):
                for block in range(args.blocks):
                    straight = run(first_tokens(f"{backend.url}/v1", "none", rounds))
                    through = run(first_tokens(f"{service.url}/v1", user, rounds))
                    direct += straight
                    garage += through
                    print(f"block {block + 1}: direct p50 {statistics.median(straight):.2f} ms, "
                          f"garage {statistics.median(through):.2f} ms", flush=True)  # fmt: skip
    print(f"first token, direct to the backend (ms): {describe(direct)}")
    print(f"first token, through garage (ms): {describe(garage)}")
    print(f"garage adds: p50 {statistics.median(garage) - statistics.median(direct):.2f} ms, "
          f"p99 {pct(garage, 0.99) - pct(direct, 0.99):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
