"""A continuous-batching engine for the fake OpenAI-compatible server: how vLLM keeps a GPU
full, reduced to a clock, so a benchmark can ask whether garage keeps such a server full.

The model (`ContinuousBatching(max_seqs, step_ms, prefill_ms)`):

- The engine runs at most `max_seqs` sequences at once (vLLM's `--max-num-seqs`). It works
  in steps, one after another while it has work. A step produces one token for every
  sequence running in it, and takes `step_ms`, plus `prefill_ms` for each sequence that
  joins in it: a new request's prompt is read in the step it joins (chunked prefill), and
  its first token comes at that step's end. The prompt's length is left out.
- A request waits, first come first served, for a free slot, and joins at the start of the
  next step. So its time to first token is: the wait for a slot (none while fewer than
  `max_seqs` run), the rest of the step under way (none when the engine was idle: an idle
  engine starts a step at once), and its own step, which is longer the more requests join
  with it. Requests beyond `max_seqs` queue.
- A sequence leaves at the end of the step that produced its last token; one whose client
  left leaves at the end of the step under way. Its slot is free for the next step.
- Tokens are produced whether or not the client reads them (they wait in the sequence, as
  vLLM's output queue holds them): a slow reader never slows the engine.
- The clock: a step ends `step_ms` (+ prefill) after it began, and the next begins when it
  was due to end, or when it did if the event loop was more than half a step late. A busy
  CPU shows as a slower engine, never a faster one: step k never ends before k steps' time.

So with every slot taken the engine streams `max_seqs / step_ms` tokens a second, and the
step numbers recorded on each `Sequence` (joined, first and last token) let a test check
the schedule without a clock. The fake streams each token as its chunk, in the usual
format (`tests/fakes/openai.py`), the moment the engine produces it.

An engine serves one event loop; meeting another (a fresh server) it starts afresh.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ContinuousBatching", "Sequence", "StepRecord"]

_HISTORY = 10_000  # sequences and steps kept for inspection


@dataclass(eq=False)
class Sequence:
    """One request in the engine: where it is, and at which steps its tokens came."""

    length: int  # tokens it will produce
    queued_at: float  # time.monotonic() when it arrived (system-wide: other processes
    # can compare their own readings with it)
    produced: int = 0
    read: int = 0  # tokens handed to the reply so far
    joined_step: int | None = None
    first_step: int | None = None  # the step that produced its first token
    last_step: int | None = None  # ... and its last one
    first_token_at: float | None = None
    done_at: float | None = None
    left: bool = False  # its client went away before the end
    _ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.queued_at

    async def next_token(self) -> None:
        """Returns once the engine has produced a token this sequence has not read yet."""
        while self.read >= self.produced:
            self._ready.clear()
            await self._ready.wait()
        self.read += 1

    def _produce(self, step: int, now: float) -> None:
        self.produced += 1
        if self.first_step is None:
            self.first_step, self.first_token_at = step, now
        if self.produced >= self.length:
            self.last_step, self.done_at = step, now
        self._ready.set()


@dataclass(frozen=True)
class StepRecord:
    number: int
    running: int  # sequences that produced a token in it
    joined: int  # of which joined in it
    started_at: float
    ended_at: float


@dataclass(eq=False)
class ContinuousBatching:
    """A FakeConfig `engine`: the fake's replies paced by a continuous-batching engine
    (the module docstring gives the model). Replaces `first_token_s` and `tokens_per_s`."""

    max_seqs: int = 256
    step_ms: float = 20.0
    prefill_ms: float = 0.0  # added to a step for each sequence joining in it

    def __post_init__(self) -> None:
        if self.max_seqs < 1 or self.step_ms <= 0 or self.prefill_ms < 0:
            raise ValueError("max_seqs >= 1, step_ms > 0 and prefill_ms >= 0, please")
        self._fresh(None)

    def _fresh(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._running: list[Sequence] = []
        self._task: asyncio.Task[None] | None = None
        self.steps_done = 0
        self.tokens_done = 0
        self.sequences: collections.deque[Sequence] = collections.deque(maxlen=_HISTORY)
        self.steps: collections.deque[StepRecord] = collections.deque(maxlen=_HISTORY)

    @contextlib.asynccontextmanager
    async def admit(self, length: int) -> AsyncIterator[Sequence]:
        """A sequence of `length` tokens for the block: queued now, produced by the engine
        step by step (`await sequence.next_token()`), dropped when the block ends."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._fresh(loop)
        sequence = Sequence(length=length, queued_at=time.monotonic())
        self.sequences.append(sequence)
        if length > 0:
            self._waiting.append(sequence)
            if self._task is None or self._task.done():
                self._task = loop.create_task(self._run())
        try:
            yield sequence
        finally:
            if sequence.produced < sequence.length:
                sequence.left = True
                with contextlib.suppress(ValueError):
                    self._waiting.remove(sequence)

    def stats(self, since: float | None = None) -> dict[str, Any]:
        """Counters for a benchmark: steps and tokens so far, sequences running and queued;
        with `since` (a time.monotonic() reading), the sequences that arrived after it, as
        [arrived, first token, done] (monotonic seconds, None for what has not happened)."""
        stats: dict[str, Any] = {}
        if since is not None:
            stats["sequences"] = [
                [s.queued_at, s.first_token_at, s.done_at]
                for s in self.sequences
                if s.queued_at >= since
            ]
        return stats | {
            "max_seqs": self.max_seqs,
            "step_ms": self.step_ms,
            "prefill_ms": self.prefill_ms,
            "steps": self.steps_done,
            "tokens": self.tokens_done,
            "running": len(self._running),
            "waiting": len(self._waiting),
        }

    async def _run(self) -> None:
        """Steps while there is work; an idle engine's task ends (the next request starts
        another, whose first step begins at once)."""
        loop = asyncio.get_running_loop()
        step_s, slack_s = self.step_ms / 1000, self.step_ms / 2000
        started = loop.time()
        while self._waiting or self._running:
            joined = 0
            while self._waiting and len(self._running) < self.max_seqs:
                sequence = self._waiting.popleft()
                sequence.joined_step = self.steps_done + 1
                self._running.append(sequence)
                joined += 1
            due = started + step_s + self.prefill_ms / 1000 * joined
            await asyncio.sleep(max(0.0, due - loop.time()))
            now, stamp = loop.time(), time.monotonic()
            self.steps_done += 1
            running = [s for s in self._running if not s.left]
            for sequence in running:
                sequence._produce(self.steps_done, stamp)
            self.tokens_done += len(running)
            self.steps.append(StepRecord(self.steps_done, len(running), joined, started, now))
            self._running = [s for s in running if s.produced < s.length]
            started = due if now - due <= slack_s else now
