"""The fake continuous-batching engine (tests/fakes/engine.py) follows its model.

The schedule is checked in steps, which the model fixes exactly; the clock only where the
model guarantees it: a step never ends early, so times have a floor and rates a ceiling.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from openai import AsyncOpenAI

from tests.fakes import ContinuousBatching, FakeConfig, FakeServer, FakeState
from tests.fakes.engine import Sequence
from tests.fakes.openai import build_app


async def _generate(engine: ContinuousBatching, length: int, read: int | None = None) -> Sequence:
    """Admits a sequence and reads `read` of its tokens (all when None), then leaves."""
    async with engine.admit(length) as sequence:
        for _ in range(length if read is None else read):
            await sequence.next_token()
    return sequence


async def test_a_full_engine_makes_max_seqs_tokens_a_step_and_queues_the_rest() -> None:
    engine = ContinuousBatching(max_seqs=4, step_ms=10)
    started = time.monotonic()
    done = await asyncio.gather(*(_generate(engine, 5) for _ in range(6)))
    elapsed_s = time.monotonic() - started

    # The first four join step 1 and produce a token a step; the other two wait for a slot,
    # which frees at the end of step 5, and join step 6.
    assert [(s.joined_step, s.first_step, s.last_step) for s in done] == [(1, 1, 5)] * 4 + [
        (6, 6, 10)
    ] * 2
    assert [step.running for step in engine.steps] == [4] * 5 + [2] * 5
    assert engine.stats() | {"running": 0, "waiting": 0} == engine.stats()
    assert (engine.steps_done, engine.tokens_done) == (10, 30)
    # Ten steps of 10 ms at least: never faster than max_seqs tokens per step time.
    assert elapsed_s >= 10 * 0.010
    assert 30 / elapsed_s <= 4 / 0.010
    first, queued = done[0], done[-1]
    assert first.ttft_s is not None and first.ttft_s >= 0.010
    assert queued.ttft_s is not None and queued.ttft_s >= 6 * 0.010


async def test_time_to_first_token_grows_with_the_requests_joining_together() -> None:
    engine = ContinuousBatching(max_seqs=16, step_ms=10, prefill_ms=5)
    alone = await _generate(engine, 2)
    together = await asyncio.gather(*(_generate(engine, 2) for _ in range(8)))

    assert alone.ttft_s is not None and alone.ttft_s >= 0.010 + 0.005
    # Eight prompts read in one step: 10 + 8 x 5 ms before anyone's first token.
    assert all(s.ttft_s is not None and s.ttft_s >= 0.010 + 8 * 0.005 for s in together)
    assert {s.first_step for s in together} == {engine.steps_done - 1}
    assert [step.joined for step in engine.steps] == [1, 0, 8, 0]


async def test_a_request_arriving_mid_batch_joins_at_the_next_step() -> None:
    engine = ContinuousBatching(max_seqs=4, step_ms=10)
    running = asyncio.create_task(_generate(engine, 6))
    async with engine.admit(1) as early:  # admitted before the engine's first step began
        await early.next_token()
    # Step 1 is over, so step 2 is under way: the late one joins step 3.
    arrived_after = engine.steps_done
    late = await _generate(engine, 2)
    await running
    assert (early.joined_step, arrived_after, late.joined_step) == (1, 1, 3)
    assert late.last_step == 4


async def test_a_client_that_leaves_frees_its_slot_for_the_next_step() -> None:
    engine = ContinuousBatching(max_seqs=1, step_ms=10)
    leaver, waiter = await asyncio.gather(_generate(engine, 50, read=2), _generate(engine, 3))
    # It left during step 3, which ends without a token for it; the waiter joins step 4.
    assert leaver.left and leaver.produced == 2
    assert waiter.joined_step == 4
    assert engine.tokens_done == 2 + 3


async def test_the_fake_server_streams_the_engines_tokens_as_vllm_does() -> None:
    engine = ContinuousBatching(max_seqs=2, step_ms=10)
    state = FakeState(FakeConfig(models=["fake-chat"], engine=engine))
    started = time.monotonic()
    with FakeServer(build_app(state)) as server:
        async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none") as sdk:

            async def chat(prompt: str) -> list:
                stream = await sdk.chat.completions.create(
                    model="fake-chat",
                    messages=[{"role": "user", "content": prompt}],
                    stream=True,
                    stream_options={"include_usage": True},
                    max_tokens=4,
                )
                return [chunk async for chunk in stream]

            replies = await asyncio.gather(*(chat("one two three four five") for _ in range(3)))
        async with httpx.AsyncClient(base_url=server.url) as http:
            stats = (await http.get("/_fake/engine", params={"since": started})).json()

    for chunks in replies:
        assert chunks[0].choices[0].delta.role == "assistant"
        texts = [c.choices[0].delta.content for c in chunks[1:-1]]
        assert texts == ["echo:", " one", " two", " three"]
        assert chunks[-2].choices[0].finish_reason == "length"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    # Two slots: never more than two sequences in a step, so the last to join did so once
    # a slot was freed.
    assert max(step.running for step in engine.steps) <= 2
    first, second, third = sorted(engine.sequences, key=lambda s: s.joined_step or 0)
    assert (third.joined_step or 0) > min(first.last_step or 0, second.last_step or 0)
    assert engine.tokens_done == 12
    assert (stats["steps"], stats["tokens"], stats["running"]) == (engine.steps_done, 12, 0)
    assert all(started <= arrived <= first <= done for arrived, first, done in stats["sequences"])
